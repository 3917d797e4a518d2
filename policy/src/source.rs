//! Source locations and problems: every error in a file the technician wrote is
//! reported as `file:line:col: message`, and every problem is reported at once.
use std::fmt;
use std::sync::Arc;

/// A position in a named source text (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The source name (usually the file's path as given).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
}

impl Location {
    /// The location of byte offset `offset` in `text`.
    pub fn at_offset(file: &Arc<str>, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() as u32 + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() as u32 + 1;
        Location {
            file: file.clone(),
            line,
            col,
        }
    }

    /// A location for a whole file (line 1, column 1), for problems with no finer place.
    pub fn file_start(file: &Arc<str>) -> Location {
        Location {
            file: file.clone(),
            line: 1,
            col: 1,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem in a source, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the problem is.
    pub at: Location,
    /// What is wrong, lower-case, naming what was expected and what was found.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem found in one validation pass (never empty when returned as an error).
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem.
    pub fn push(&mut self, at: Location, message: impl Into<String>) {
        self.0.push(Problem {
            at,
            message: message.into(),
        });
    }
    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Sorts problems by file, line and column, so they read top to bottom.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (&a.at.file, a.at.line, a.at.col).cmp(&(&b.at.file, b.at.line, b.at.col))
        });
    }
    /// `Ok(value)` when nothing was recorded, otherwise every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_line_and_column() {
        let file: Arc<str> = "p.toml".into();
        let text = "a = 1\nbé = 2\n";
        assert_eq!(
            Location::at_offset(&file, text, 0).to_string(),
            "p.toml:1:1"
        );
        assert_eq!(
            Location::at_offset(&file, text, 6).to_string(),
            "p.toml:2:1"
        );
        // 'é' is two bytes but one column.
        assert_eq!(
            Location::at_offset(&file, text, 9).to_string(),
            "p.toml:2:3"
        );
    }
}
