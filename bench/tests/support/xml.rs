// A small well-formedness check of the JUnit XML `synod suite` writes,
// shared by its unit tests (`src/nightly/suite/outputs.rs`) and
// `tests/suite_downtime.rs`.

/// A small well-formedness check of JUnit XML: tags
/// nest and close, attribute values are quoted, and text and values
/// hold no raw `<`, `"` in values, or `&` outside an entity.
pub fn well_formed(xml: &str) -> Result<(), String> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .ok_or("no XML declaration")?;
    let entity = |rest: &str| {
        ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&apos;"]
            .iter()
            .any(|e| rest.starts_with(e))
    };
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(['<', '&']) {
        if rest[i..].starts_with('&') {
            if !entity(&rest[i..]) {
                return Err(format!("raw & at {:?}", &rest[i..(i + 20).min(rest.len())]));
            }
            rest = &rest[i + 1..];
            continue;
        }
        let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
        let tag = &rest[i + 1..end];
        if tag.contains('<') {
            return Err(format!("raw < inside a tag: {tag:?}"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let self_closing = tag.ends_with('/');
            let inner = tag.trim_end_matches('/');
            let name = inner
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_string();
            // name="value" pairs, values without raw quotes or &.
            let mut attrs = inner[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("unquoted attribute in {tag:?}"))?;
                let value_end = attrs[eq + 2..].find('"').ok_or("unterminated value")? + eq + 2;
                let value = &attrs[eq + 2..value_end];
                for (j, _) in value.match_indices('&') {
                    if !entity(&value[j..]) {
                        return Err(format!("raw & in attribute {value:?}"));
                    }
                }
                attrs = attrs[value_end + 1..].trim_start();
            }
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    if rest.contains('>') {
        return Err("a stray >".into());
    }
    match stack.is_empty() {
        true => Ok(()),
        false => Err(format!("unclosed {stack:?}")),
    }
}
