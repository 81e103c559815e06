//! Alert text templates: `{{name}}` placeholders filled from an alert's labels and value.

use std::collections::BTreeMap;

use super::Refused;

/// The placeholder names of a template, or why it is malformed.
pub fn placeholders(template: &str) -> Result<Vec<String>, Refused> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| Refused(format!("`{{{{` without `}}}}` in {template:?}")))?;
        let name = after[..close].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Refused(format!("{{{{{name}}}}} is not a label name")));
        }
        names.push(name.to_owned());
        rest = &after[close + 2..];
    }
    Ok(names)
}

/// Fills a template; a placeholder without a value renders as `?`.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        out.push_str(values.get(after[..close].trim()).map_or("?", String::as_str));
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        let template = "CPU {{value}}% on {{ InstanceId }}";
        assert_eq!(placeholders(template).expect("valid"), ["value", "InstanceId"]);
        let values: BTreeMap<String, String> =
            [("value".to_owned(), "97.5".to_owned()), ("InstanceId".to_owned(), "i-01".to_owned())]
                .into();
        assert_eq!(render(template, &values), "CPU 97.5% on i-01");
        assert_eq!(render("{{missing}} here", &values), "? here");
        assert!(placeholders("{{oops").is_err());
        assert!(placeholders("{{a b}}").is_err());
    }
}
