//! Server-side SVG charts: stacked bars per day. No script, no inline style
//! (the CSP forbids both): colours are presentation attributes.
use maud::{Markup, html};

/// Colours for the series, in order; the last series beyond them is "other".
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// A stacked bar chart: one bar per label, one coloured segment per series.
pub struct Stacked {
    /// What the chart shows (the SVG's title, for screen readers too).
    pub title: String,
    /// The x-axis labels (days).
    pub labels: Vec<String>,
    /// Series name and one value per label.
    pub series: Vec<(String, Vec<u64>)>,
}

impl Stacked {
    /// Keeps the `PALETTE.len() - 1` largest series and folds the rest into
    /// "other", so every colour means one thing.
    pub fn top_series(mut self) -> Stacked {
        let keep = PALETTE.len() - 1;
        if self.series.len() <= PALETTE.len() {
            return self;
        }
        self.series
            .sort_by_key(|(name, v)| (std::cmp::Reverse(v.iter().sum::<u64>()), name.clone()));
        let rest = self.series.split_off(keep);
        let mut other = vec![0u64; self.labels.len()];
        for (_, values) in rest {
            for (o, v) in other.iter_mut().zip(values) {
                *o += v;
            }
        }
        self.series.push(("other".into(), other));
        self
    }

    /// The stacked segments of bar `i`: series index, name, bottom and top value.
    fn segments(&self, i: usize) -> Vec<(usize, &str, u64, u64)> {
        let mut base = 0u64;
        let mut out = Vec::new();
        for (s, (name, values)) in self.series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v > 0 {
                out.push((s, name.as_str(), base, base + v));
                base += v;
            }
        }
        out
    }

    /// The chart as inline SVG with a legend.
    pub fn render(&self) -> Markup {
        let (w, h) = (720.0_f64, 240.0_f64);
        let (left, bottom, top) = (44.0, 36.0, 10.0);
        let n = self.labels.len().max(1) as f64;
        let totals: Vec<u64> = (0..self.labels.len())
            .map(|i| {
                self.series
                    .iter()
                    .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                    .sum()
            })
            .collect();
        let max = nice_max(totals.iter().copied().max().unwrap_or(0));
        let plot_h = h - bottom - top;
        let slot = (w - left - 8.0) / n;
        let bar = (slot * 0.7).max(1.0);
        let y = |v: u64| top + plot_h - plot_h * (v as f64) / (max as f64);
        let label_every = (self.labels.len() / 10).max(1);
        html! {
            figure.chart {
                svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (w) " " (h)} role="img"
                    aria-label=(self.title) {
                    title { (self.title) }
                    @for i in 0..=4u64 {
                        @let v = max * i / 4;
                        line x1=(left) x2=(w - 8.0) y1=(y(v)) y2=(y(v)) stroke="#ddd" stroke-width="1" {}
                        text x=(left - 4.0) y=(y(v) + 4.0) text-anchor="end" font-size="11" fill="#444" { (v) }
                    }
                    @for (i, label) in self.labels.iter().enumerate() {
                        @let x = left + slot * (i as f64) + (slot - bar) / 2.0;
                        @for (s, name, lo, hi) in self.segments(i) {
                            rect x=(x) y=(y(hi)) width=(bar) height=(y(lo) - y(hi))
                                fill=(PALETTE[s % PALETTE.len()]) {
                                title { (label) " " (name) ": " (hi - lo) }
                            }
                        }
                        @if i % label_every == 0 {
                            text x=(x + bar / 2.0) y=(h - bottom + 14.0) text-anchor="middle" font-size="10" fill="#444" {
                                (label.get(5..).unwrap_or(label))
                            }
                        }
                    }
                    line x1=(left) x2=(w - 8.0) y1=(top + plot_h) y2=(top + plot_h) stroke="#444" stroke-width="1" {}
                }
                figcaption {
                    ul.legend {
                        @for (s, (name, values)) in self.series.iter().enumerate() {
                            li {
                                svg.swatch xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10" width="10" height="10" {
                                    rect width="10" height="10" fill=(PALETTE[s % PALETTE.len()]) {}
                                }
                                " " (name) " (" (values.iter().sum::<u64>()) ")"
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A round axis maximum at or above `v` (at least 4, so the gridlines are whole numbers).
fn nice_max(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let candidate = step * m * 4;
            if candidate >= v.max(4) {
                return candidate;
            }
        }
        step = step.saturating_mul(10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_and_folding() {
        assert_eq!(nice_max(0), 4);
        assert_eq!(nice_max(7), 8);
        assert_eq!(nice_max(33), 40);
        assert_eq!(nice_max(101), 200);
        let chart = Stacked {
            title: "t".into(),
            labels: vec!["2026-01-01".into()],
            series: (0..12).map(|i| (format!("c{i}"), vec![i])).collect(),
        }
        .top_series();
        assert_eq!(chart.series.len(), PALETTE.len());
        assert_eq!(chart.series[0].0, "c11");
        assert_eq!(chart.series.last().map(|s| s.1[0]), Some(10));
        let svg = chart.render().into_string();
        assert!(svg.contains("<svg") && !svg.contains("style="), "{svg}");
    }
}
