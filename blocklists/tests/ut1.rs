//! Loads the real UT1 tree from `shared/data/ut1` (next to the repository, or
//! `HALLPASS_SHARED_DATA`). Missing data is a failure, not a skip: a green run
//! must mean the real lists were loaded.
use std::path::{Path, PathBuf};

use blocklists::{Builder, import};

fn shared_data() -> PathBuf {
    match std::env::var_os("HALLPASS_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

fn lower_case(input: &str) -> Result<String, String> {
    let name = input.to_ascii_lowercase();
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err("empty label".to_string());
    }
    Ok(name)
}

#[test]
fn real_ut1_tree_loads_every_category_once() {
    let tree = shared_data().join("ut1");
    let categories = import::category_dirs(&tree)
        .unwrap_or_else(|e| panic!("the UT1 tree must exist at {}: {e}", tree.display()));
    // The aliases (`porn -> adult`, `proxy -> redirector`, ...) are skipped.
    for alias in [
        "porn",
        "proxy",
        "drugs",
        "ads",
        "mail",
        "aggressive",
        "violence",
    ] {
        assert!(
            !categories.iter().any(|c| c == alias),
            "{alias} is an alias"
        );
    }
    assert!(categories.len() >= 69, "{categories:?}");
    let canon = lower_case;
    let mut builder = Builder::new(&canon);
    let mut entries = 0;
    let mut ids = std::collections::HashMap::new();
    for (id, name) in categories.iter().enumerate() {
        let id = u8::try_from(id).expect("fewer than 128 categories");
        let report = builder
            .add_squidguard_dir(id, &tree.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        entries += report.entries;
        ids.insert(name.as_str(), id);
    }
    assert!(entries > 900_000, "{entries}");
    let matcher = builder.build().expect("the real lists compile");
    assert!(
        matcher.domain_count() > 500_000,
        "{}",
        matcher.domain_count()
    );
    let bit = |name: &str| 1u128 << ids[name];
    let gambling = std::fs::read_to_string(tree.join("gambling/domains")).expect("gambling");
    let first = gambling.lines().next().expect("a gambling entry");
    assert_ne!(matcher.host_mask(first) & bit("gambling"), 0, "{first}");
    assert_ne!(
        matcher.host_mask(&format!("www.{first}")) & bit("gambling"),
        0
    );
    assert_eq!(
        matcher.host_mask(&format!("not{first}")) & bit("gambling"),
        0
    );
    // adult has URL prefixes but no domains here.
    let adult = std::fs::read_to_string(tree.join("adult/urls")).expect("adult urls");
    let url = adult
        .lines()
        .next()
        .expect("an adult url")
        .to_ascii_lowercase();
    let (host, path) = url.split_at(url.find('/').expect("host/path"));
    assert_ne!(matcher.lookup(host, path) & bit("adult"), 0, "{url}");
    // The strict_redirector expression (Google cache) compiles and matches.
    let cache = matcher.lookup("www.google.com", "/search?q=cache:example.com");
    assert_ne!(cache & bit("strict_redirector"), 0);
    assert!(
        matcher.heap_bytes() / matcher.domain_count() <= 16,
        "{} bytes for {} domains",
        matcher.heap_bytes(),
        matcher.domain_count()
    );
}

#[test]
fn shipped_lists_load_without_problems() {
    let lists = Path::new(env!("CARGO_MANIFEST_DIR")).join("lists");
    let canon = lower_case;
    let mut builder = Builder::new(&canon);
    let mut problems = Vec::new();
    let mut id = 0u8;
    for source in ["ut1", "baseline"] {
        let dir = lists.join(source);
        for category in import::category_dirs(&dir).expect("shipped source") {
            let report = builder
                .add_squidguard_dir(id, &dir.join(&category))
                .unwrap_or_else(|e| panic!("{category}: {e}"));
            assert!(report.entries > 0, "{source}/{category} is empty");
            problems.extend(report.problems);
            id += 1;
        }
        assert!(
            lists.join(source).join("README.md").is_file()
                || lists.join(source).join("PROVENANCE.md").is_file()
        );
    }
    let porn = builder
        .add_hosts_file(id, &lists.join("sinfonietta/pornography.gz"))
        .expect("sinfonietta list");
    problems.extend(porn.problems);
    assert!(porn.entries > 40_000);
    assert!(problems.is_empty(), "{problems:?}");
    let matcher = builder.build().expect("shipped lists compile");
    for host in [
        "child-abuse.hallpass-test.invalid",
        "terrorism.hallpass-test.invalid",
    ] {
        assert_ne!(matcher.host_mask(host), 0, "{host}");
    }
    let url = matcher.lookup("baseline-url.hallpass-test.invalid", "/terrorism/page");
    assert_ne!(url, 0);
    assert_eq!(
        matcher.lookup("baseline-url.hallpass-test.invalid", "/terrorismx"),
        0
    );
    for file in [
        "ut1/LICENSE.pdf",
        "ut1/LICENSE.md",
        "sinfonietta/LICENSE",
        "sinfonietta/PROVENANCE.md",
    ] {
        assert!(lists.join(file).is_file(), "{file}");
    }
}
