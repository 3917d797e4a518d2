//! Browser tests: Debian's headless Chromium, driven through chromedriver by
//! fantoccini, against a console over a seeded store. They fail (never skip)
//! when chromium or chromedriver is missing: `scripts/install-test-deps.sh`
//! installs both. Each page is saved to `target/screenshots/`.
mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use support::{Fixture, ILLEGAL_URL, PASSWORD};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser at a time: the machine has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install the Debian package `{package}` (bash scripts/install-test-deps.sh)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
    }

    /// Clicks `element`, which loads a new page, and waits until the new page
    /// has loaded: a click returns before the browser navigates, so without
    /// this the next read could find the same element on the page being left.
    /// The old page's window carries a mark; the new document's does not. While
    /// the browser is between the two, WebDriver answers with errors (stale
    /// element, "node does not belong to the document"), which are retried.
    async fn click_to_load(&self, element: fantoccini::elements::Element, what: &str) {
        self.client
            .execute("window.hallpassOldPage = true;", vec![])
            .await
            .unwrap_or_else(|e| panic!("{what}: marking the page: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let loaded = self
                .client
                .execute(
                    "return window.hallpassOldPage === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            match loaded {
                Ok(serde_json::Value::Bool(true)) => return,
                other => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: no new page after 10 s (last answer: {other:?})"
                ),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// [`Browser::click_to_load`] on the element `selector` names.
    async fn submit(&self, selector: &str) {
        let element = self.css(selector).await;
        self.click_to_load(element, selector).await;
    }

    async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.expect("text")
    }

    async fn source(&self) -> String {
        self.client.source().await.expect("source")
    }

    async fn sign_in(&self, f: &Fixture, user: &str) {
        self.client
            .goto(&format!("{}/login", f.base))
            .await
            .expect("goto");
        self.css("#user").await.send_keys(user).await.expect("user");
        self.css("#password")
            .await
            .send_keys(PASSWORD)
            .await
            .expect("password");
        self.submit("#sign-in").await;
        self.css("header.top form.signout").await;
    }

    async fn sign_out(&self) {
        self.submit("header.top form.signout button").await;
        self.css("#user").await;
    }
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::root().join("target"));
    target.join("screenshots")
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_and_see_the_dashboard_with_charts() {
    let _one = ONE_BROWSER.lock().await;
    let f = support::start(false).await;
    let b = Browser::start().await;
    // Any page without a session shows the sign-in form and returns there.
    b.client
        .goto(&format!("{}/incidents", f.base))
        .await
        .expect("goto");
    b.css("#user").await;
    b.shot("login").await;
    b.css("#user")
        .await
        .send_keys("e.safety")
        .await
        .expect("user");
    b.css("#password")
        .await
        .send_keys(PASSWORD)
        .await
        .expect("password");
    b.submit("#sign-in").await;
    b.css("#incidents").await;
    assert!(
        b.client
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/incidents")
    );
    b.shot("incidents").await;

    b.client.goto(&f.base).await.expect("dashboard");
    let bars = b
        .client
        .find_all(Locator::Css("#chart-category svg rect"))
        .await
        .expect("bars");
    assert!(bars.len() > 20, "stacked bars per day: {}", bars.len());
    let group_bars = b
        .client
        .find_all(Locator::Css("#chart-group svg rect"))
        .await
        .expect("bars");
    assert!(group_bars.len() > 20);
    let legend = b.text("#chart-group figcaption").await;
    for g in ["year3", "year4", "year5", "year6"] {
        assert!(legend.contains(g), "{legend}");
    }
    let sites = b
        .client
        .find_all(Locator::Css("#top-sites tbody tr"))
        .await
        .expect("rows");
    assert_eq!(sites.len(), 10);
    let open = b.text("#open-incidents").await;
    assert!(
        open.contains("illegal") && open.contains("review-request"),
        "{open}"
    );
    assert!(!b.source().await.contains(support::ILLEGAL_HOST));
    b.shot("dashboard").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_the_block_report() {
    let _one = ONE_BROWSER.lock().await;
    let f = support::start(false).await;
    let b = Browser::start().await;
    b.sign_in(&f, "e.safety").await;
    b.client
        .goto(&format!("{}/blocks", f.base))
        .await
        .expect("goto");
    let all = b.text("#count strong").await;
    let from = console::pages::day(support::now_ms() - 10 * console::pages::DAY_MS);
    // Date inputs take the locale's order; set the value through the keyboard
    // as a person would, month first in the default en-US locale.
    let from_input = b.css("input[name=from]").await;
    let (y, rest) = from.split_at(4);
    let md: String = rest.replace('-', "");
    from_input
        .send_keys(&format!("{}{}", md, y))
        .await
        .expect("from");
    b.css("select[name=group] option[value=year5]")
        .await
        .click()
        .await
        .expect("group");
    b.submit("#apply").await;
    b.css("#blocks").await;
    let url = b.client.current_url().await.expect("url");
    assert!(url.query().unwrap_or("").contains("group=year5"), "{url}");
    assert!(
        url.query().unwrap_or("").contains(&format!("from={from}")),
        "{url}"
    );
    let filtered: u64 = b.text("#count strong").await.parse().expect("count");
    let groups = b
        .client
        .find_all(Locator::Css("#blocks tbody td:nth-child(3)"))
        .await
        .expect("cells");
    assert!(!groups.is_empty());
    for g in groups {
        assert_eq!(g.text().await.expect("text"), "year5");
    }
    assert!(filtered > 0 && filtered < all.parse::<u64>().expect("count") + 1000);
    // A category on top narrows it further.
    let category = b.text("#blocks tbody tr:first-child td:nth-child(4)").await;
    b.css(&format!("select[name=category] option[value='{category}']"))
        .await
        .click()
        .await
        .expect("category");
    b.submit("#apply").await;
    b.css("#blocks").await;
    let narrowed: u64 = b.text("#count strong").await.parse().expect("count");
    assert!(
        narrowed > 0 && narrowed <= filtered,
        "{narrowed} <= {filtered}"
    );
    for c in b
        .client
        .find_all(Locator::Css("#blocks tbody td:nth-child(4)"))
        .await
        .expect("cells")
    {
        assert_eq!(c.text().await.expect("text"), category);
    }
    let csv = b
        .css("#csv")
        .await
        .attr("href")
        .await
        .expect("href")
        .expect("a link");
    assert!(
        csv.contains("group=year5") && csv.contains("category="),
        "{csv}"
    );
    b.shot("blocks").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn review_and_sign_off_an_incident() {
    let _one = ONE_BROWSER.lock().await;
    let f = support::start(false).await;
    let b = Browser::start().await;
    let page = format!("{}/incidents/{}", f.base, f.inappropriate);
    b.sign_in(&f, "e.safety").await;
    b.client.goto(&page).await.expect("goto");
    assert_eq!(b.text("#state").await, "new");
    b.shot("incident-new").await;
    b.css("#result")
        .await
        .send_keys("Repeated attempts at a blocked site during lessons; spoke to the pupil.")
        .await
        .expect("result");
    b.css("#action-inform-parents")
        .await
        .click()
        .await
        .expect("action");
    b.css("#action-sanctions")
        .await
        .click()
        .await
        .expect("action");
    b.css("#outcome")
        .await
        .send_keys("Parents informed by letter.")
        .await
        .expect("outcome");
    b.submit("#record-review").await;
    b.css("#close").await;
    assert_eq!(b.text("#state").await, "action-taken");
    b.css("#close-outcome")
        .await
        .send_keys("No further attempts in a week.")
        .await
        .expect("outcome");
    b.submit("#close").await;
    b.css("#reopen").await;
    assert_eq!(b.text("#state").await, "closed");
    let audit = b.text("#audit").await;
    for step in ["start-review", "record-review", "close"] {
        assert!(audit.contains(step), "{audit}");
    }
    b.sign_out().await;

    // The principal and a governor sign it off.
    for (user, slot) in [
        ("p.head", "#principal-signoff"),
        ("g.gov", "#governor-signoff"),
    ] {
        b.sign_in(&f, user).await;
        b.client.goto(&page).await.expect("goto");
        assert_eq!(b.text(slot).await, "-");
        // Neither may review.
        assert!(b.client.find(Locator::Css("#reopen")).await.is_err());
        b.submit("#sign").await;
        b.css("#audit").await;
        assert!(b.text(slot).await.starts_with(user), "{slot}");
        assert!(
            b.client.find(Locator::Css("#sign")).await.is_err(),
            "signed once"
        );
        if user == "g.gov" {
            b.shot("incident-signed").await;
        }
        b.sign_out().await;
    }
    let i = f
        .store()
        .incident_list(&incidents::IncidentFilter::default())
        .expect("list")
        .into_iter()
        .find(|i| i.number == f.inappropriate)
        .expect("incident");
    assert_eq!(i.state, incidents::State::Closed);
    assert_eq!(
        i.actions,
        [
            incidents::ActionTaken::InformParents,
            incidents::ActionTaken::Sanctions
        ]
    );
    assert_eq!(i.principal_signoff.map(|s| s.by).as_deref(), Some("p.head"));
    assert_eq!(i.governor_signoff.map(|s| s.by).as_deref(), Some("g.gov"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_that_may_not_see_an_illegal_url_does_not_see_it() {
    let _one = ONE_BROWSER.lock().await;
    let f = support::start(false).await;
    let b = Browser::start().await;
    let page = format!("{}/incidents/{}", f.base, f.illegal);
    for user in ["e.safety", "p.head", "g.gov", "t.tech"] {
        b.sign_in(&f, user).await;
        b.client.goto(&page).await.expect("goto");
        b.css("#url-withheld").await;
        let source = b.source().await;
        assert!(
            !source.contains(support::ILLEGAL_HOST),
            "{user} sees the URL"
        );
        // Nor may they review it.
        assert!(
            b.client.find(Locator::Css("#review-form")).await.is_err(),
            "{user}"
        );
        if user == "e.safety" {
            b.shot("illegal-withheld").await;
        }
        b.sign_out().await;
    }
    b.sign_in(&f, "d.lead").await;
    b.client.goto(&page).await.expect("goto");
    assert_eq!(b.text("#url").await, ILLEGAL_URL);
    b.css("#review-form").await;
    b.shot("illegal-safeguarding-lead").await;
    let views: Vec<String> = f
        .trail(f.illegal)
        .into_iter()
        .filter(|t| t.2 == "view")
        .map(|t| t.0)
        .collect();
    assert_eq!(views, ["e.safety", "p.head", "g.gov", "t.tech", "d.lead"]);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_view_explains_and_review_requests_are_listed() {
    let _one = ONE_BROWSER.lock().await;
    let f = support::start(false).await;
    let b = Browser::start().await;
    b.sign_in(&f, "t.tech").await;
    b.client
        .goto(&format!("{}/policy", f.base))
        .await
        .expect("goto");
    let bands = b.text("#bands").await;
    assert!(
        bands.contains("ks1") && bands.contains("ks2") && bands.contains("staff"),
        "{bands}"
    );
    let baseline = b.text("#baseline").await;
    for c in ["child-abuse", "terrorism", "malware", "phishing"] {
        assert!(baseline.contains(c), "{baseline}");
    }
    b.css("#explain-url")
        .await
        .send_keys("https://www.facebook.com/")
        .await
        .expect("url");
    b.css("#explain-group option[value=year5]")
        .await
        .click()
        .await
        .expect("group");
    b.submit("#explain-go").await;
    assert_eq!(b.text("#verdict").await, "BLOCK");
    let line = b.text("#policy-line").await;
    assert!(
        line.starts_with("config/primary/policy.toml:") || line.contains("policy.toml:"),
        "{line}"
    );
    b.shot("policy-explain").await;

    b.client
        .goto(&format!("{}/requests", f.base))
        .await
        .expect("goto");
    let rows = b
        .client
        .find_all(Locator::Css("#incidents tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    let text = rows[0].text().await.expect("row");
    assert!(text.contains("year5.pupil3"), "{text}");
    b.shot("review-requests").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_technician_runs_a_filter_check_and_sees_the_result() {
    let _one = ONE_BROWSER.lock().await;
    let f = support::start_with(false, support::Checks::Proxy).await;
    let b = Browser::start().await;
    // Before any run: the dashboard says so, and the history is empty.
    b.sign_in(&f, "t.tech").await;
    assert!(
        b.text("#last-filter-check")
            .await
            .contains("No filter check has been recorded yet"),
    );
    b.submit("header.top nav a[href='/filter-checks']").await;
    b.css("#no-checks").await;
    b.submit("#run-now").await;
    // The page reloads itself until the run ends, then links the result.
    let link = match b
        .client
        .wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css("#check-finished-link"))
        .await
    {
        Ok(link) => link,
        Err(e) => panic!("the run did not finish: {e}\n{}", b.source().await),
    };
    let finished = b.text("#check-finished").await;
    assert!(
        finished.contains("t.tech") && finished.contains("PASS"),
        "{finished}"
    );
    let row = b.text("#history tbody tr:first-child").await;
    assert!(
        row.contains("t.tech") && row.contains("year5") && row.contains("PASS"),
        "{row}"
    );
    b.shot("filter-checks").await;
    b.click_to_load(link, "the finished check").await;
    assert_eq!(b.text("#result").await, "PASS");
    assert_eq!(b.text("#ran-by").await, "t.tech");
    assert!(b.text("#under-blocked").await.starts_with('0'));
    assert!(b.text("#over-blocked").await.starts_with('0'));
    let group = b.text("#group-year5").await;
    for line in [
        "child-abuse",
        "terrorism",
        "social",
        "wikipedia",
        "google",
        "youtube",
    ] {
        assert!(group.contains(line), "{line} in\n{group}");
    }
    assert!(!group.contains("FAIL"), "{group}");
    b.shot("filter-check-detail").await;

    // The store has the run, with the technician as the runner, and the
    // dashboard shows it.
    let runs = f.store().filter_checks(0, u64::MAX, 10).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].check.ran_by, "t.tech");
    assert!(
        runs[0].check.passed && runs[0].check.probes > 20,
        "{:?}",
        runs[0]
    );
    b.client.goto(&f.base).await.expect("dashboard");
    let panel = b.text("#last-filter-check").await;
    assert!(
        panel.contains("PASS") && panel.contains("t.tech"),
        "{panel}"
    );
    b.css(&format!(
        "#last-filter-check a[href='/filter-checks/{}']",
        runs[0].id
    ))
    .await;
    b.shot("dashboard-last-filter-check").await;
    b.sign_out().await;

    // Other roles see the history, but no button.
    b.sign_in(&f, "g.gov").await;
    b.client
        .goto(&format!("{}/filter-checks", f.base))
        .await
        .expect("goto");
    b.css("#history").await;
    assert!(b.client.find(Locator::Css("#run-now")).await.is_err());
    b.stop().await;
}
