use std::collections::BTreeMap;

use super::*;

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn takes(expression: &str, tag: Option<&str>, pairs: &[(&str, &str)]) -> bool {
    SqlFilter::parse(expression)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .matches(tag, &props(pairs))
}

#[test]
fn comparisons_are_numeric_with_numbers_and_textual_between_texts() {
    let m = [("a", "10"), ("region", "eu"), ("price", "3.5")];
    assert!(takes("a > 5", None, &m));
    assert!(takes("a = 10.0", None, &m), "numeric equality");
    assert!(!takes("a < 5", None, &m));
    assert!(takes("price BETWEEN 3 AND 4", None, &m));
    assert!(takes("price NOT BETWEEN 4 AND 5", None, &m));
    assert!(takes("region = 'eu'", None, &m));
    assert!(takes("region <> 'us' AND region != 'ap'", None, &m));
    assert!(takes("region IN ('us', 'eu')", None, &m));
    assert!(takes("region NOT IN ('us')", None, &m));
    assert!(!takes("region > 5", None, &m), "not a number: unknown");
    assert!(
        !takes("NOT (region > 5)", None, &m),
        "NOT unknown is unknown"
    );
}

#[test]
fn missing_properties_are_null_and_unknown_follows_three_valued_logic() {
    let m = [("a", "1")];
    assert!(takes("b IS NULL", None, &m));
    assert!(takes("a IS NOT NULL", None, &m));
    assert!(!takes("b = 1", None, &m));
    assert!(
        !takes("b <> 1", None, &m),
        "a comparison with NULL is never true"
    );
    assert!(takes("b = 1 OR a = 1", None, &m), "TRUE OR unknown");
    assert!(!takes("b = 1 AND a = 1", None, &m));
    assert!(
        takes("NOT (b = 1 AND a = 2)", None, &m),
        "FALSE AND unknown is false"
    );
}

#[test]
fn tags_text_operators_precedence_and_keywords() {
    let m = [("city", "Hangzhou"), ("it's", "x")];
    assert!(takes("TAGS = 'TagA'", Some("TagA"), &m));
    assert!(takes("TAGS IN ('TagA', 'TagB')", Some("TagB"), &m));
    assert!(!takes("TAGS = 'TagA'", None, &m));
    assert!(takes(
        "city STARTSWITH 'Hang' and city endswith 'zhou'",
        None,
        &m
    ));
    assert!(takes("city CONTAINS 'ngz'", None, &m));
    assert!(takes("city NOT CONTAINS 'x'", None, &m));
    // AND binds tighter than OR.
    assert!(takes("TRUE OR FALSE AND FALSE", None, &m));
    assert!(!takes("(TRUE OR FALSE) AND FALSE", None, &m));
    assert!(takes("city = 'Hangzhou' AND NOT city = 'x'", None, &m));
    let quoted = [("q", "it's")];
    assert!(takes("q = 'it''s'", None, &quoted));
}

#[test]
fn bad_expressions_say_what_is_wrong_and_where() {
    for (expression, offset, says) in [
        ("", 0, "empty"),
        ("a >", 3, "found the end"),
        ("a = 'open", 4, "not closed"),
        ("a > 'x'", 4, "compares numbers only"),
        ("a BETWEEN 1 2", 12, "expected AND"),
        ("a IN ('x', 3)", 11, "'string'"),
        ("(a = 1", 6, "expected `)`"),
        ("a = 1 b", 6, "after the expression"),
        ("a # 1", 2, "unexpected `#`"),
        ("a LIKE 'x'", 2, "expected a comparison"),
        ("a = 1..2", 4, "not a number"),
    ] {
        let error = SqlFilter::parse(expression).unwrap_err();
        assert_eq!(error.offset, offset, "{expression}: {error}");
        assert!(error.message.contains(says), "{expression}: {error}");
    }
    let deep = "(".repeat(1000) + "a = 1" + &")".repeat(1000);
    assert!(
        SqlFilter::parse(&deep)
            .unwrap_err()
            .message
            .contains("nested")
    );
    let long = "a = 1 OR ".repeat(600) + "a = 1";
    assert!(
        SqlFilter::parse(&long)
            .unwrap_err()
            .message
            .contains("longer")
    );
}
