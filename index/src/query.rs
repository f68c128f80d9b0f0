//! Lucene-style wildcards (`channel:microsoft-windows-hyper-v*`, `verif?`)
//! rewritten into the regex terms tantivy's query parser understands
//! (`channel:/microsoft\-windows\-hyper\-v.*/`).

/// Drops the parentheses around a group that only negates (`(NOT x)`):
/// tantivy reads such a group as "nothing", Lucene as "all but x".
/// pySigma's Lucene backend writes `… AND (NOT level:information)`.
fn unwrap_negated_groups(query: &str) -> String {
    let chars: Vec<char> = query.chars().collect();
    let mut drop = vec![false; chars.len()];
    for i in 0..chars.len() {
        let starts_group = chars[i] == '('
            && chars.len() >= i + 5
            && chars[i + 1..i + 5].iter().collect::<String>() == "NOT ";
        if !starts_group {
            continue;
        }
        // Find the matching parenthesis, minding quotes and escapes.
        let (mut depth, mut j, mut quoted) = (0i32, i, false);
        while j < chars.len() {
            match chars[j] {
                '\\' => j += 1,
                '"' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        if j < chars.len() {
            drop[i] = true;
            drop[j] = true;
        }
    }
    chars
        .iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(c, _)| *c)
        .collect()
}

/// Rewrites a query for tantivy: negated groups unwrapped, and every
/// unquoted `field:value` or bare `value` term holding `*` or `?` (other
/// than a lone `*` or a range bound) turned into a regex term, or into a
/// phrase where a `*words with spaces*` pattern means "contains". Values
/// are lower-cased, as every text field is indexed.
pub fn rewrite_wildcards(query: &str) -> String {
    let query = unwrap_negated_groups(query);
    let mut out = String::with_capacity(query.len() + 8);
    let mut in_quotes = false;
    let mut depth_range = 0u32;
    let mut token = String::new();
    // tantivy reads `a AND NOT b` as nothing but `a AND -b` as meant.
    let mut negate_next = false;
    let flush = |token: &mut String, out: &mut String, negate_next: &mut bool| {
        if token == "NOT" {
            *negate_next = true;
        } else if !token.is_empty() {
            out.push_str(&rewrite_term(token));
        }
        token.clear();
    };
    let mut escaped = false;
    for c in query.chars() {
        if negate_next && c != ' ' {
            out.push('-');
            negate_next = false;
        }
        if escaped {
            token.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                token.push(c);
                escaped = true;
            }
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
                let was_not = token == "NOT";
                flush(&mut token, &mut out, &mut negate_next);
                if was_not && c == ' ' {
                    continue;
                }
                if negate_next && c != ' ' {
                    out.push('-');
                    negate_next = false;
                }
                out.push(c);
            }
            _ => token.push(c),
        }
    }
    flush(&mut token, &mut out, &mut negate_next);
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
    let unescaped = unescape(value);
    // `*collection\ registry*`: words inside stars mean "contains the phrase".
    let inner = unescaped.trim_matches('*');
    if inner.contains(' ') && !inner.contains(['*', '?', '"']) {
        let field = field.unwrap_or("message");
        return format!("{prefix}{field}:\"{inner}\"");
    }
    let mut regex = String::with_capacity(value.len() * 2);
    for c in unescaped.chars().flat_map(char::to_lowercase) {
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

/// Removes Lucene backslash escapes (`NODE\\-B` → `NODE-B`).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Field names a query may use (besides `data.<Name>`).
pub const FIELDS: &[&str] = &[
    "timestamp",
    "event_id",
    "record_id",
    "host",
    "channel",
    "provider",
    "level",
    "vm_name",
    "vm_id",
    "hresult",
    "message",
    "format",
];

/// Turns a parser failure into an error that points at the problem: an
/// unclosed quote, parenthesis or range, an operator with nothing after
/// it, an unknown field, or a value of the wrong type.
pub fn explain_error(query: &str, parser_says: &str) -> crate::IndexError {
    let (position, reason) = locate(query).unwrap_or((None, parser_says.to_string()));
    crate::IndexError::Query {
        query: query.to_string(),
        reason,
        position,
    }
}

fn locate(query: &str) -> Option<(Option<usize>, String)> {
    let chars: Vec<char> = query.chars().collect();
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut quote: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if let Some(q) = quote {
            if c == '"' {
                quote = None;
            }
            let _ = q;
            i += 1;
            continue;
        }
        match c {
            '"' => quote = Some(i),
            '(' | '[' | '{' => stack.push((c, i)),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some((open, _)) if open == want || (want != '(' && open != '(') => {}
                    _ => return Some((Some(i), format!("`{c}` closes nothing"))),
                }
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Some((Some(q), "this quote is never closed".into()));
    }
    if let Some((open, at)) = stack.pop() {
        let what = if open == '(' { "parenthesis" } else { "range" };
        return Some((Some(at), format!("this {what} is never closed")));
    }
    // Words: operators in the wrong place, unknown fields.
    let mut words: Vec<(usize, String)> = Vec::new();
    let mut start = None;
    let mut in_quote = false;
    for (i, c) in chars.iter().enumerate() {
        if *c == '"' {
            in_quote = !in_quote;
        }
        let boundary = !in_quote && (c.is_whitespace() || *c == '(' || *c == ')');
        match (boundary, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push((s, chars[s..i].iter().collect()));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, chars[s..].iter().collect()));
    }
    let is_op = |w: &str| matches!(w, "AND" | "OR" | "&&" | "||");
    if let Some((at, w)) = words.first() {
        if is_op(w) {
            return Some((Some(*at), format!("`{w}` needs something before it")));
        }
    }
    if let Some((at, w)) = words.last() {
        if is_op(w) || w == "NOT" {
            return Some((Some(*at), format!("`{w}` needs something after it")));
        }
    }
    for pair in words.windows(2) {
        if is_op(&pair[0].1) && is_op(&pair[1].1) {
            return Some((
                Some(pair[1].0),
                format!("`{}` right after `{}`", pair[1].1, pair[0].1),
            ));
        }
    }
    for (at, w) in &words {
        let w = w.trim_start_matches(['+', '-']);
        if let Some((field, value)) = w.split_once(':') {
            if field.is_empty() || field.starts_with('"') {
                continue;
            }
            if !FIELDS.contains(&field) && !field.starts_with("data.") {
                return Some((
                    Some(*at),
                    format!(
                        "no field `{field}`: use {}, or data.<Name>",
                        FIELDS.join(", ")
                    ),
                ));
            }
            if matches!(field, "event_id" | "record_id")
                && !value.is_empty()
                && !value.starts_with(['[', '{', '(', '*'])
                && value.parse::<u64>().is_err()
            {
                return Some((
                    Some(*at + field.len() + 1),
                    format!("`{field}` takes a number, not `{value}`"),
                ));
            }
        }
    }
    None
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
        // What pySigma's Lucene backend writes.
        check(
            "(event_id:21502 AND host:NODE\\-B) AND message:*collection\\ registry* AND (NOT level:information)",
            "(event_id:21502 AND host:NODE\\-B) AND message:\"collection registry\" AND -level:information",
        );
        check("message:\"a* b\"", "message:\"a* b\"");
        check("event_id:[21000 TO *]", "event_id:[21000 TO *]");
        check(
            "NOT (host:node-* OR -vm_name:adfs?)",
            "-(host:/node\\-.*/ OR -vm_name:/adfs./)",
        );
    }
}
