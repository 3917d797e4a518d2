//! CSV cells that spreadsheets open safely: one definition for every CSV
//! hallpass writes (the incident export, the period report, the console's block
//! report), so a fix to one is a fix to all.

/// A cell a spreadsheet will not run as a formula: a leading `=`, `+`, `-`,
/// `@`, tab or carriage return gets a `'` in front.
pub fn defuse_formula(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

/// [`defuse_formula`], then quoted as RFC 4180 asks when it holds a comma, a
/// quote or a line break.
pub fn cell(text: &str) -> String {
    let text = defuse_formula(text);
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_separators_quoted() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("year5"), "year5");
        assert_eq!(defuse_formula("-1"), "'-1");
    }
}
