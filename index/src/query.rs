//! Lucene-style wildcards (`channel:microsoft-windows-hyper-v*`, `verif?`)
//! rewritten into the regex terms tantivy's query parser understands
//! (`channel:/microsoft\-windows\-hyper\-v.*/`).

/// Rewrites every unquoted `field:value` or bare `value` term holding `*` or
/// `?` (other than a lone `*` or a range bound) into a regex term. Values are
/// lower-cased, as every text field is indexed.
pub fn rewrite_wildcards(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 8);
    let mut in_quotes = false;
    let mut depth_range = 0u32;
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        out.push_str(&rewrite_term(token));
        token.clear();
    };
    for c in query.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                token.push(c);
            }
            '[' | '{' if !in_quotes => {
                depth_range += 1;
                token.push(c);
            }
            ']' | '}' if !in_quotes => {
                depth_range = depth_range.saturating_sub(1);
                token.push(c);
            }
            ' ' | '(' | ')' if !in_quotes && depth_range == 0 => {
                flush(&mut token, &mut out);
                out.push(c);
            }
            _ => token.push(c),
        }
    }
    flush(&mut token, &mut out);
    out
}

fn rewrite_term(token: &str) -> String {
    if token.contains('"') || token.contains('[') || token.contains('{') || token.starts_with('/') {
        return token.to_owned();
    }
    let (prefix, field, value) = {
        let (sign, rest) = match token.strip_prefix(['-', '+']) {
            Some(rest) => (&token[..1], rest),
            None => ("", token),
        };
        match rest.split_once(':') {
            Some((field, value)) => (sign, Some(field), value),
            None => (sign, None, rest),
        }
    };
    if value == "*" || value.is_empty() || !value.contains(['*', '?']) {
        return token.to_owned();
    }
    let mut regex = String::with_capacity(value.len() * 2);
    for c in value.chars().flat_map(char::to_lowercase) {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            c if c.is_alphanumeric() || c == '_' => regex.push(c),
            c => {
                regex.push('\\');
                regex.push(c);
            }
        }
    }
    match field {
        Some(field) => format!("{prefix}{field}:/{regex}/"),
        None => format!("{prefix}message:/{regex}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite_wildcards;

    #[test]
    fn wildcards_become_regexes() {
        let check = |q: &str, want: &str| assert_eq!(rewrite_wildcards(q), want, "{q}");
        check(
            "channel:Microsoft-Windows-Hyper-V*",
            "channel:/microsoft\\-windows\\-hyper\\-v.*/",
        );
        check(
            "event_id:21502 AND verif?",
            "event_id:21502 AND message:/verif./",
        );
        check("*", "*");
        check("message:\"a* b\"", "message:\"a* b\"");
        check("event_id:[21000 TO *]", "event_id:[21000 TO *]");
        check(
            "NOT (host:node-* OR -vm_name:adfs?)",
            "NOT (host:/node\\-.*/ OR -vm_name:/adfs./)",
        );
    }
}
