//! Table-driven tests of the builder and matcher through the public API.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Builder, ListError, Mask, Matcher};

/// A small stand-in for `policy::host::canonicalize`: lower-case, one trailing
/// dot dropped, empty labels and characters outside `[a-z0-9._:-]` refused.
pub(crate) fn test_canon(input: &str) -> Result<String, String> {
    let lower = input.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || (!name.contains(':') && name.split('.').any(str::is_empty)) {
        return Err("empty label".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return Err(format!("character {bad:?} is not allowed in a host"));
    }
    Ok(name.to_string())
}

fn build(add: impl FnOnce(&mut Builder<'_>)) -> Matcher {
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    add(&mut builder);
    builder.build().expect("test lists compile")
}

/// A fresh, empty temporary folder for one test.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hallpass-blocklists-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

fn write_gz(path: &Path, text: &str) {
    let file = fs::File::create(path).expect("temp file");
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).expect("gzip write");
    encoder.finish().expect("gzip finish");
}

/// Where `shared/data` is: beside the repository, or `HALLPASS_SHARED_DATA`.
pub(crate) fn shared_data() -> PathBuf {
    match std::env::var_os("HALLPASS_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

#[test]
fn domains_match_at_label_boundaries_and_ips_exactly() {
    let matcher = build(|b| {
        b.add_domains_text(
            0,
            "t",
            "example.com\n10.0.0.1\n2001:db8::1\n0.0.1\nco.uk.evil.test\n",
        );
        b.add_domains_text(1, "u", "sub.example.com\n");
    });
    let table: &[(&str, Mask)] = &[
        ("example.com", 0b01),
        ("a.example.com", 0b01),
        ("a.b.c.example.com", 0b01),
        ("sub.example.com", 0b11),
        ("x.sub.example.com", 0b11),
        ("notexample.com", 0),
        ("example.co", 0),
        ("example.com.evil.test", 0),
        ("com", 0),
        ("xample.com", 0),
        ("10.0.0.1", 0b01),
        ("110.0.0.1", 0),
        ("10.0.0.10", 0),
        // `0.0.1` is a suffix of `10.0.0.1` as text, but IPs never suffix-walk.
        ("20.0.0.1", 0),
        ("2001:db8::1", 0b01),
        ("2001:db8::2", 0),
        ("co.uk", 0),
        ("x.co.uk.evil.test", 0b01),
        ("", 0),
    ];
    for &(host, expected) in table {
        assert_eq!(matcher.host_mask(host), expected, "host_mask({host:?})");
        assert_eq!(matcher.lookup(host, "/"), expected, "lookup({host:?})");
    }
    assert_eq!(matcher.domain_count(), 6);
}

#[test]
fn duplicates_merge_and_counts_are_per_list() {
    let matcher = build(|b| {
        b.add_domains_text(2, "a", "dup.test\ndup.test\nDUP.test.\nonly-a.test\n");
        b.add_domains_text(127, "b", "dup.test\n");
        b.add_urls_text(2, "a", "x.test/p\n");
        b.add_expressions_text(127, "b", "evil\nevil\n");
    });
    assert_eq!(matcher.host_mask("www.dup.test"), (1 << 2) | (1 << 127));
    assert_eq!(matcher.domain_count(), 2);
    let counts = matcher.list_counts();
    assert_eq!(counts.len(), 2);
    assert_eq!((counts[0].id, counts[0].domains, counts[0].urls), (2, 2, 1));
    assert_eq!(
        (counts[1].id, counts[1].domains, counts[1].expressions),
        (127, 1, 1)
    );
    assert!(matcher.heap_bytes() > 0);
}

#[test]
fn bad_lines_are_reported_with_their_line_numbers() {
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    let text = "good.test\n\n# comment\nbad!name.test\nx.test/path\ntwo words\n.leading.test\nempty..label\r\nlast.test # note";
    let report = builder.add_domains_text(0, "lists/d", text);
    assert_eq!(report.entries, 3);
    let lines: Vec<(u32, String)> = report
        .problems
        .iter()
        .map(|p| (p.line, p.to_string()))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.0).collect::<Vec<_>>(),
        [4, 5, 6, 8],
        "{lines:?}"
    );
    assert!(
        lines[0]
            .1
            .starts_with("lists/d:4: \"bad!name.test\": character '!'")
    );
    assert!(lines[1].1.contains("urls"));
    let matcher = builder.build().expect("compiles");
    assert_eq!(matcher.host_mask("a.leading.test"), 1);
    assert_eq!(matcher.host_mask("last.test"), 1);
}

#[test]
fn url_prefixes_match_at_label_and_segment_boundaries() {
    let matcher = build(|b| {
        let report = b.add_urls_text(
            4,
            "urls",
            "a.com/foo\nA.COM/Upper/Case\nb.com/dir/\nc.com/search?q=x\nd.com/#frag\nhttp://e.com/s\n1.2.3.4/x\n",
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.entries, 7);
    });
    let hit = 1 << 4;
    let table: &[(&str, &str, Mask)] = &[
        ("a.com", "/foo", hit),
        ("a.com", "/foo/x", hit),
        ("a.com", "/foo?q", hit),
        ("a.com", "/foobar", 0),
        ("a.com", "/fo", 0),
        ("a.com", "/", 0),
        ("www.a.com", "/foo", hit),
        ("nota.com", "/foo", 0),
        ("a.com.evil.test", "/foo", 0),
        ("a.com", "/upper/case", hit),
        ("b.com", "/dir/", hit),
        ("b.com", "/dir/x", hit),
        ("b.com", "/dir", 0),
        ("c.com", "/search?q=x", hit),
        ("c.com", "/search?q=x&y=1", hit),
        ("c.com", "/search?q=xy", 0),
        ("d.com", "/anything", hit),
        ("e.com", "/s/t", hit),
        ("1.2.3.4", "/x", hit),
        ("5.1.2.3.4", "/x", 0),
    ];
    for &(host, path, expected) in table {
        assert_eq!(matcher.lookup(host, path), expected, "{host}{path}");
        assert_eq!(matcher.host_mask(host), 0, "urls never block a whole host");
    }
    assert_eq!(
        matcher.matched_entries("www.a.com", "/foo/x"),
        vec![(4, "a.com/foo".to_string())]
    );
}

#[test]
fn expressions_match_host_and_path_and_respect_the_size_limit() {
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    let text = "(/banner/|/Advertisement/)\n(\n\\w{1000}{1000}\n^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/search\\?q=[0-9]+$\n";
    let report = builder.add_expressions_text(9, "exp", text);
    assert_eq!(report.entries, 2);
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("exp:2: invalid expression"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("exp:3: expression compiles to more than"),
        "{problems:?}"
    );
    let matcher = builder.build().expect("compiles");
    let table: &[(&str, &str, Mask)] = &[
        ("x.test", "/banner/1.gif", 1 << 9),
        ("x.test", "/advertisement/", 1 << 9),
        ("x.test", "/bannerx", 0),
        ("1.2.3.4", "/search?q=42", 1 << 9),
        ("1.2.3.4", "/search?q=42x", 0),
    ];
    for &(host, path, expected) in table {
        assert_eq!(matcher.lookup(host, path), expected, "{host}{path}");
    }
    assert_eq!(
        matcher.matched_entries("x.test", "/banner/"),
        vec![(9, "(/banner/|/Advertisement/)".to_string())]
    );
}

#[test]
fn hosts_text_skips_the_preamble_and_reports_redirections() {
    let text = "# header\n127.0.0.1 localhost\n127.0.0.1 localhost.localdomain\n127.0.0.1 local\n\
        255.255.255.255 broadcasthost\n::1 localhost\n::1 ip6-localhost\nfe80::1%lo0 localhost\n\
        ff00::0 ip6-localnet\nff02::1 ip6-allnodes\n0.0.0.0 0.0.0.0\n\n#Snapchat\n\
        0.0.0.0 Blocked.Test\n127.0.0.7 p19-sign.tiktokcdn-us.com\n0.0.0.0 a.test b.test # two names\n\
        10.1.2.3 intranet.test\n0.0.0.0\n:: v6sink.test\n";
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    let report = builder.add_hosts_text(1, "hosts", text);
    assert_eq!(report.entries, 5);
    let lines: Vec<u32> = report.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, [17, 18], "{:?}", report.problems);
    let matcher = builder.build().expect("compiles");
    for host in [
        "localhost",
        "local",
        "broadcasthost",
        "0.0.0.0",
        "ip6-localhost",
        "intranet.test",
    ] {
        assert_eq!(matcher.host_mask(host), 0, "{host}");
    }
    for host in [
        "blocked.test",
        "www.blocked.test",
        "p19-sign.tiktokcdn-us.com",
        "a.test",
        "b.test",
        "v6sink.test",
    ] {
        assert_eq!(matcher.host_mask(host), 2, "{host}");
    }
}

#[test]
fn real_hosts_files_load_without_blocking_localhost() {
    let hosts = shared_data().join("hosts");
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    let steven = builder
        .add_hosts_file(0, &hosts.join("stevenblack-2019/hosts"))
        .expect("shared/data/hosts/stevenblack-2019/hosts must exist");
    assert!(steven.entries > 55_000, "{}", steven.entries);
    let social = builder
        .add_hosts_file(1, &hosts.join("sinfonietta/social-hosts"))
        .expect("shared/data/hosts/sinfonietta/social-hosts must exist");
    assert!(social.problems.is_empty(), "{:?}", social.problems);
    let matcher = builder.build().expect("compiles");
    for host in [
        "localhost",
        "localhost.localdomain",
        "broadcasthost",
        "0.0.0.0",
        "127.0.0.1",
    ] {
        assert_eq!(matcher.host_mask(host), 0, "{host}");
    }
    assert_eq!(matcher.host_mask("p19-sign.tiktokcdn-us.com"), 2);
    assert_eq!(matcher.host_mask("30-day-change.com") & 1, 1);
}

#[test]
fn squidguard_dirs_read_plain_and_gzip_files() {
    let dir = temp_dir("gz");
    write_gz(&dir.join("domains.gz"), "gz.test\nbad!\n");
    fs::write(dir.join("urls"), "plain.test/p\n").expect("write");
    write_gz(&dir.join("expressions.gz"), "zzz-expression\n");
    fs::write(dir.join("usage"), "black\n").expect("write");
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    let report = builder.add_squidguard_dir(3, &dir).expect("loads");
    assert_eq!(report.entries, 3);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].line, 2);
    assert!(report.problems[0].file.ends_with("domains.gz"));
    let matcher = builder.build().expect("compiles");
    assert_eq!(matcher.host_mask("a.gz.test"), 8);
    assert_eq!(matcher.lookup("plain.test", "/p/q"), 8);
    assert_eq!(matcher.lookup("x.test", "/zzz-expression"), 8);

    // Both spellings of one file: ambiguous, refused.
    fs::write(dir.join("domains"), "other.test\n").expect("write");
    let mut builder = Builder::new(&canon);
    let error = builder.add_squidguard_dir(3, &dir).expect_err("ambiguous");
    assert!(matches!(error, ListError::Ambiguous { .. }), "{error}");

    // Missing folder and corrupt gzip: errors naming the path.
    let missing = dir.join("nope");
    let error = builder
        .add_squidguard_dir(3, &missing)
        .expect_err("missing");
    assert!(error.to_string().contains("nope"), "{error}");
    fs::remove_file(dir.join("domains")).expect("remove");
    fs::write(dir.join("domains.gz"), "not gzip").expect("write");
    let error = builder.add_squidguard_dir(3, &dir).expect_err("corrupt");
    assert!(error.to_string().contains("domains.gz"), "{error}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn list_ids_over_127_are_refused() {
    let canon = test_canon;
    let mut builder = Builder::new(&canon);
    assert!(matches!(
        builder.add_hosts_file(128, Path::new("/nonexistent")),
        Err(ListError::ListIdOutOfRange { id: 128 })
    ));
    builder.add_domains_text(200, "t", "a.test\n");
    assert!(matches!(
        builder.build(),
        Err(ListError::ListIdOutOfRange { id: 200 })
    ));
}

#[test]
fn matched_entries_names_every_list_and_entry() {
    let matcher = build(|b| {
        b.add_domains_text(0, "a", "example.com\n");
        b.add_domains_text(5, "b", "www.example.com\nexample.com\n");
        b.add_urls_text(6, "c", "example.com/x\n");
        b.add_expressions_text(7, "d", "example\\.com/x\n");
    });
    assert_eq!(
        matcher.matched_entries("www.example.com", "/x/y"),
        vec![
            (0, "example.com".to_string()),
            (5, "example.com".to_string()),
            (5, "www.example.com".to_string()),
            (6, "example.com/x".to_string()),
            (7, "example\\.com/x".to_string()),
        ]
    );
    assert_eq!(
        matcher.lookup("www.example.com", "/x/y"),
        (1 << 0) | (1 << 5) | (1 << 6) | (1 << 7)
    );
    assert!(matcher.matched_entries("other.test", "/").is_empty());
}

#[test]
fn empty_builder_matches_nothing() {
    let matcher = build(|_| {});
    assert_eq!(matcher.lookup("example.com", "/"), 0);
    assert_eq!(matcher.domain_count(), 0);
    assert!(matcher.list_counts().is_empty());
}

#[test]
fn import_cleans_sorts_dedupes_compresses_and_skips_aliases() {
    let root = temp_dir("import");
    let tree = root.join("tree");
    let cat = tree.join("cat");
    fs::create_dir_all(&cat).expect("mkdir");
    let mut domains = String::from("b.test\nWWW.B.TEST\na.test\nb.test\nbad!\n10.0.0.1\n");
    for i in 0..20_000 {
        domains.push_str(&format!("padding-entry-{i:05}.example\n"));
    }
    fs::write(cat.join("domains"), &domains).expect("write");
    fs::write(cat.join("urls"), "z.test/Path\nsub.b.test/x\nz.test/path\n").expect("write");
    fs::write(cat.join("expressions"), "ok\n(\nok\n").expect("write");
    fs::write(cat.join("usage"), "black\n").expect("write");
    fs::write(tree.join("alias"), "cat").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink("cat", tree.join("link")).expect("symlink");
    assert_eq!(crate::import::category_dirs(&tree).expect("tree"), ["cat"]);

    let canon = test_canon;
    let out = root.join("out");
    let run = || crate::import::import_squidguard_tree(&tree, &out, None, &canon);
    let reports = run().expect("import");
    assert_eq!(reports.len(), 1);
    let files = &reports[0].files;
    let (d, u, e) = (&files[0], &files[1], &files[2]);
    assert_eq!((d.accepted, d.duplicates, d.covered), (20_005, 1, 1));
    assert_eq!(d.written, 20_003);
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].line, 5);
    assert_eq!((u.written, u.duplicates, u.covered), (1, 1, 1));
    assert_eq!((e.written, e.duplicates, e.problems.len()), (1, 1, 1));
    assert_eq!(e.problems[0].line, 2);

    let gz = out.join("cat/domains.gz");
    assert_eq!(d.output.as_deref(), Some(gz.as_path()));
    let first = fs::read(&gz).expect("gz written");
    let text = crate::formats::read_list_file(&gz).expect("gz readable");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..3], ["10.0.0.1", "a.test", "b.test"]);
    assert!(
        lines.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
    assert_eq!(
        fs::read_to_string(out.join("cat/urls")).expect("urls"),
        "z.test/path\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("cat/usage")).expect("usage"),
        "black\n"
    );

    // Re-importing gives identical bytes, and the output loads as a category.
    run().expect("second import");
    assert_eq!(fs::read(&gz).expect("gz"), first);
    let mut builder = Builder::new(&canon);
    let report = builder
        .add_squidguard_dir(0, &out.join("cat"))
        .expect("loads");
    assert!(report.problems.is_empty());
    let matcher = builder.build().expect("compiles");
    assert_eq!(matcher.host_mask("www.b.test"), 1);
    assert_eq!(matcher.lookup("z.test", "/path/x"), 1);

    // A hosts file becomes a cleaned hosts file.
    let hosts = root.join("hosts");
    fs::write(
        &hosts,
        "127.0.0.1 localhost\n0.0.0.0 B.test\n0.0.0.0 www.b.test\n10.0.0.1 x.test\n",
    )
    .expect("write");
    let report = crate::import::import_hosts_file(&hosts, &out.join("h/list"), &canon)
        .expect("hosts import");
    assert_eq!(
        (report.written, report.covered, report.problems.len()),
        (1, 1, 1)
    );
    assert_eq!(
        fs::read_to_string(out.join("h/list")).expect("written"),
        "0.0.0.0 b.test\n"
    );
    let _ = fs::remove_dir_all(&root);
}

/// Reference: every label-boundary suffix looked up in a map of names, OR-ed.
fn reference_mask(lists: &[(u8, Vec<String>)], host: &str) -> Mask {
    let mut mask = 0;
    let ip = crate::matcher::is_ip_literal(host);
    for (id, names) in lists {
        for name in names {
            let below = host
                .strip_suffix(name.as_str())
                .is_some_and(|rest| rest.is_empty() || (!ip && rest.ends_with('.')));
            if below {
                mask |= 1 << id;
            }
        }
    }
    mask
}

#[test]
fn the_shortest_first_walk_finds_every_listed_suffix() {
    // Deep chains, siblings, names listed only far below their parents, IPs,
    // and hosts that share a suffix with a listed name without being below it.
    let lists: Vec<(u8, Vec<String>)> = vec![
        (
            0,
            vec!["com".into(), "a.b.c.d.e.example".into(), "10.0.0.1".into()],
        ),
        (
            1,
            vec![
                "b.c.d.e.example".into(),
                "x.test".into(),
                "deep.x.y.z.test".into(),
            ],
        ),
        (
            2,
            (0..300).map(|i| format!("n{i}.s{}.test", i % 7)).collect(),
        ),
        (
            3,
            vec!["e.example".into(), "0.0.1".into(), "y.z.test".into()],
        ),
    ];
    let matcher = build(|b| {
        for (id, names) in &lists {
            b.add_domains_text(*id, "t", &names.join("\n"));
        }
    });
    let mut hosts: Vec<String> = vec![
        "com",
        "example.com",
        "example",
        "e.example",
        "d.e.example",
        "c.d.e.example",
        "b.c.d.e.example",
        "a.b.c.d.e.example",
        "z.a.b.c.d.e.example",
        "b.d.e.example",
        "x.test",
        "w.x.test",
        "test",
        "z.test",
        "x.y.z.test",
        "deep.x.y.z.test",
        "a.deep.x.y.z.test",
        "eep.x.y.z.test",
        "10.0.0.1",
        "1.10.0.0.1",
        "0.0.1",
        "s1.test",
        "n8.s1.test",
        "q.n8.s1.test",
        "n8.s2.test",
        "2001:db8::1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    hosts.extend((0..300).map(|i| format!("w.n{i}.s{}.test", (i * 3) % 7)));
    for host in &hosts {
        assert_eq!(
            matcher.host_mask(host),
            reference_mask(&lists, host),
            "{host}"
        );
    }
}

#[test]
fn url_prefix_hosts_are_found_by_the_walk_wherever_they_sit() {
    let matcher = build(|b| {
        b.add_domains_text(0, "d", "example.com\n");
        // A URL host below a listed domain, one far below an unlisted
        // registrable name, and one that is a bare registrable name.
        b.add_urls_text(
            1,
            "u",
            "a.b.example.com/x\nq.r.s.unlisted.test/y\nplain.test/z\n",
        );
    });
    let table: &[(&str, &str, Mask)] = &[
        ("a.b.example.com", "/x/1", 0b11),
        ("w.a.b.example.com", "/x", 0b11),
        ("a.b.example.com", "/y", 0b01),
        ("b.example.com", "/x", 0b01),
        ("q.r.s.unlisted.test", "/y", 0b10),
        ("p.q.r.s.unlisted.test", "/y?k=v", 0b10),
        ("r.s.unlisted.test", "/y", 0),
        ("unlisted.test", "/y", 0),
        ("plain.test", "/z", 0b10),
        ("plain.test", "/", 0),
    ];
    for &(host, path, expected) in table {
        assert_eq!(matcher.lookup(host, path), expected, "{host}{path}");
    }
    assert_eq!(matcher.host_mask("q.r.s.unlisted.test"), 0);
    assert_eq!(matcher.domain_count(), 1, "walk-only names are not domains");
    let counts = matcher.list_counts();
    assert_eq!(counts[0].domains, 1);
    assert_eq!((counts[1].domains, counts[1].urls), (0, 3));
}

#[test]
fn url_paths_go_through_the_path_normaliser() {
    let canon = test_canon;
    // A stand-in for the request path normaliser: `%XX` of letters decoded,
    // `/./` and `x/../` removed; `%00` refused.
    let paths = |path: &str| -> Result<String, String> {
        if path.contains("%00") {
            return Err("nul byte".to_string());
        }
        let decoded = path.replace("%61", "a").replace("%2F", "/");
        let mut segments: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "." => {}
                ".." => {
                    segments.pop();
                }
                other => segments.push(other),
            }
        }
        Ok(segments.join("/"))
    };
    let mut builder = Builder::with_path_normaliser(&canon, &paths);
    let report = builder.add_urls_text(
        2,
        "urls",
        "a.com/x/./Y\nb.com/%61b\nc.com/p/q/../r\nd.com/bad%00\ne.com/a%2Fb?Q=1\n",
    );
    assert_eq!(report.entries, 4);
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0]
            .to_string()
            .starts_with("urls:4: \"/bad%00\": nul byte"),
        "{:?}",
        report.problems
    );
    let matcher = builder.build().expect("compiles");
    let table: &[(&str, &str, Mask)] = &[
        ("a.com", "/x/y", 1 << 2),
        ("b.com", "/ab/c", 1 << 2),
        ("c.com", "/p/r", 1 << 2),
        ("c.com", "/p/q", 0),
        ("e.com", "/a/b?q=1", 1 << 2),
        ("d.com", "/bad", 0),
    ];
    for &(host, path, expected) in table {
        assert_eq!(matcher.lookup(host, path), expected, "{host}{path}");
    }
    // Without a normaliser, entry paths are only lower-cased (as before).
    let plain = build(|b| {
        b.add_urls_text(2, "urls", "a.com/x/./Y\n");
    });
    assert_eq!(plain.lookup("a.com", "/x/./y"), 1 << 2);
    assert_eq!(plain.lookup("a.com", "/x/y"), 0);
}
