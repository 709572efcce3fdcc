//! Human output: aligned tables and plain text. Everything a server sends
//! is untrusted, so control characters (terminal escape sequences
//! included) are replaced before they reach a terminal. JSON output needs
//! no such care: serde_json escapes them.

use mcp_recovery::blocking::{
    Content, Prompt, PromptResult, Resource, ResourceRead, ResourceTemplate, Tool, ToolResult,
};
use serde_json::Value;

/// One line of server text, safe to print: no control characters, and at
/// most `max` characters (cut with an ellipsis).
pub fn cell(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Multi-line server text, safe to print: keeps newlines and tabs, drops
/// every other control character.
pub fn block(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A description's first line: tables are one line per item.
fn first_line(text: Option<&str>) -> String {
    cell(text.unwrap_or("").lines().next().unwrap_or("").trim(), 70)
}

pub fn tools(tools: &[Tool]) -> String {
    let rows: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            let a = &t.annotations;
            let mut hints = Vec::new();
            if a.read_only_hint == Some(true) {
                hints.push("read-only");
            } else if a.idempotent_hint == Some(true) {
                hints.push("idempotent");
            }
            if a.destructive_hint == Some(true) {
                hints.push("destructive");
            }
            vec![
                cell(&t.name, 40),
                parameters(&t.input_schema),
                hints.join(","),
                first_line(t.description.as_deref()),
            ]
        })
        .collect();
    table(
        &["NAME", "PARAMETERS (* required)", "HINTS", "DESCRIPTION"],
        &rows,
    )
}

/// `a: integer*, b: string`: a tool's parameters from its input schema.
fn parameters(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let params: Vec<String> = props
        .iter()
        .map(|(name, p)| {
            let kind = match p.get("type") {
                Some(Value::String(t)) => t.clone(),
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("|"),
                _ if p.get("enum").is_some() => "enum".into(),
                _ => "any".into(),
            };
            let star = if required.contains(&name.as_str()) {
                "*"
            } else {
                ""
            };
            format!("{}: {kind}{star}", cell(name, 30))
        })
        .collect();
    cell(&params.join(", "), 60)
}

pub fn templates(templates: &[ResourceTemplate]) -> String {
    let rows: Vec<Vec<String>> = templates
        .iter()
        .map(|t| {
            vec![
                cell(&t.uri_template, 60),
                cell(&t.name, 30),
                first_line(t.description.as_deref()),
            ]
        })
        .collect();
    table(&["URI TEMPLATE", "NAME", "DESCRIPTION"], &rows)
}

pub fn resources(resources: &[Resource]) -> String {
    let rows: Vec<Vec<String>> = resources
        .iter()
        .map(|r| {
            vec![
                cell(&r.uri, 60),
                cell(&r.name, 30),
                cell(r.mime_type.as_deref().unwrap_or(""), 30),
                first_line(r.description.as_deref()),
            ]
        })
        .collect();
    table(&["URI", "NAME", "MIME", "DESCRIPTION"], &rows)
}

pub fn prompts(prompts: &[Prompt]) -> String {
    let rows: Vec<Vec<String>> = prompts
        .iter()
        .map(|p| {
            let args: Vec<String> = p
                .arguments
                .iter()
                .map(|a| format!("{}{}", cell(&a.name, 30), if a.required { "*" } else { "" }))
                .collect();
            vec![
                cell(&p.name, 40),
                args.join(","),
                first_line(p.description.as_deref()),
            ]
        })
        .collect();
    table(&["NAME", "ARGUMENTS (* required)", "DESCRIPTION"], &rows)
}

/// One content block: text as it is, anything else as a one-line summary.
fn content(c: &Content) -> String {
    let summary = match c {
        Content::Text(t) => return block(&t.text),
        Content::Image(b) | Content::Audio(b) => format!(
            "{} {}, {} bytes of base64",
            c.kind(),
            cell(&b.mime_type, 40),
            b.data.len()
        ),
        Content::ResourceLink(r) => format!("resource link {}", cell(&r.uri, 80)),
        Content::Resource(e) => format!("resource {}", cell(&e.resource.uri, 80)),
        _ => cell(c.kind(), 30),
    };
    format!("[{summary}]")
}

pub fn tool_result(r: &ToolResult) -> String {
    let mut parts: Vec<String> = r.content.iter().map(content).collect();
    if parts.is_empty() {
        if let Some(s) = &r.structured_content {
            parts.push(s.to_string());
        }
    }
    parts.join("\n")
}

pub fn resource_read(r: &ResourceRead) -> String {
    let parts: Vec<String> = r
        .contents
        .iter()
        .map(|c| match (&c.text, &c.blob) {
            (Some(text), _) => block(text),
            (None, Some(blob)) => format!(
                "[blob {}, {} bytes of base64]",
                cell(c.mime_type.as_deref().unwrap_or("?"), 40),
                blob.len()
            ),
            (None, None) => format!("[empty {}]", cell(&c.uri, 80)),
        })
        .collect();
    parts.join("\n")
}

pub fn prompt_result(p: &PromptResult) -> String {
    let mut lines = Vec::new();
    if let Some(d) = &p.description {
        lines.push(format!("# {}", cell(d, 200)));
    }
    for m in &p.messages {
        lines.push(format!("{}: {}", cell(&m.role, 20), content(&m.content)));
    }
    lines.join("\n")
}

/// A tool result back as the JSON the server sent. `ToolResult` keeps every
/// field it does not name in `extra`, so nothing is lost; the typed call is
/// used (rather than a raw request) because it carries progress.
pub fn tool_result_json(r: &ToolResult) -> Value {
    let mut out = r.extra.clone();
    let content: Vec<Value> = r.content.iter().map(Content::to_value).collect();
    out.insert("content".into(), content.into());
    if let Some(s) = &r.structured_content {
        out.insert("structuredContent".into(), s.clone());
    }
    out.insert("isError".into(), r.is_error.into());
    Value::Object(out)
}

/// A number of progress as people write it: 2, not 2.0.
pub fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        assert_eq!(cell("a\x1b[2Jb\nc", 100), "a [2Jb c");
        assert_eq!(block("a\x1b[2J\nb\tc"), "a[2J\nb\tc");
        assert_eq!(cell("abcdef", 3), "abc…");
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["a".to_owned(), "x".to_owned()],
            vec!["long".to_owned(), "y".to_owned()],
        ];
        assert_eq!(table(&["N", "D"], &rows), "N     D\na     x\nlong  y");
    }

    #[test]
    fn numbers() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.5), "0.5");
    }
}
