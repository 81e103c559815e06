//! A first check of CloudWatch Logs filter patterns, so a pattern FilterLogEvents would
//! refuse is reported by `klaxon rules check` and not at 3 a.m.: terms and quoted
//! phrases, JSON patterns `{ $.field = value }`, space-delimited `[a, b=...]`.

use super::Refused;

/// Ok when the pattern is well formed; else why not.
pub fn check_filter_pattern(pattern: &str) -> Result<(), Refused> {
    let trimmed = pattern.trim();
    if trimmed.is_empty() {
        return Err(Refused(
            "the pattern is empty (use \"\" quoted terms, { $.x = ... } or [ ... ])".into(),
        ));
    }
    let mut depth: Vec<char> = Vec::new();
    let mut in_quote = false;
    let mut escaped = false;
    for c in trimmed.chars() {
        if in_quote {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '{' | '[' | '(' => depth.push(c),
            '}' | ']' | ')' => {
                let open = match c {
                    '}' => '{',
                    ']' => '[',
                    _ => '(',
                };
                if depth.pop() != Some(open) {
                    return Err(Refused(format!("unbalanced {c:?}")));
                }
            }
            _ => {}
        }
    }
    if in_quote {
        return Err(Refused("an unclosed quote".into()));
    }
    if let Some(open) = depth.last() {
        return Err(Refused(format!("unclosed {open:?}")));
    }
    if trimmed.starts_with('{') && !trimmed.contains('$') {
        return Err(Refused(
            "a JSON pattern selects fields with $, e.g. { $.level = \"ERROR\" }".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_patterns_pass_and_broken_ones_say_why() {
        for good in [
            "ERROR",
            "\"ERROR\" \"checkout\"",
            "{ $.status >= 500 }",
            "[ip, user, ..., status=5*, size]",
            "?ERROR ?WARN",
        ] {
            assert!(check_filter_pattern(good).is_ok(), "{good}");
        }
        assert_eq!(check_filter_pattern("\"unclosed").expect_err("invalid").0, "an unclosed quote");
        assert!(check_filter_pattern("{ $.a = 1").expect_err("invalid").0.contains("unclosed"));
        assert!(check_filter_pattern("[a, b}").expect_err("invalid").0.contains("unbalanced"));
        assert!(check_filter_pattern("{ level = 1 }").is_err());
        assert!(check_filter_pattern("  ").is_err());
    }
}
