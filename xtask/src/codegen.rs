//! Generates Berth's ECS wire types from the botocore service model: one
//! serde struct per structure shape, one enum per string enum, and the table
//! of operations with their input and output shapes.
//!
//! Mapping rules, chosen so the server's JSON matches what AWS emits:
//! - required members are plain fields; other members are `Option` and are
//!   omitted when `None`, except non-boxed integers, longs, doubles and
//!   booleans of shapes other than an operation's input, which ECS always
//!   emits (`runningCount: 0`), so they are plain values;
//! - timestamps are `crate::Timestamp` (epoch seconds with milliseconds);
//! - lists are `Vec`, maps are `BTreeMap<String, _>`, documents `serde_json::Value`;
//! - enum values keep their exact wire spelling through `#[serde(rename)]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The parsed model with the pieces the generators need.
pub struct Model {
    pub shapes: BTreeMap<String, Value>,
    /// Operation name → (input shape, output shape, documentation's first sentence).
    pub operations: BTreeMap<String, Operation>,
}

pub struct Operation {
    pub input: Option<String>,
    pub output: Option<String>,
    pub summary: String,
}

impl Model {
    pub fn load(gz: &[u8]) -> Result<Self> {
        let mut json = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut json)
            .context("decompressing the model")?;
        let model: Value = serde_json::from_str(&json).context("parsing the model")?;
        let shapes = model["shapes"]
            .as_object()
            .context("model has no shapes")?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut operations = BTreeMap::new();
        for (name, op) in model["operations"]
            .as_object()
            .context("model has no operations")?
        {
            let shape_of = |k: &str| op[k]["shape"].as_str().map(str::to_owned);
            operations.insert(
                name.clone(),
                Operation {
                    input: shape_of("input"),
                    output: shape_of("output"),
                    summary: first_sentence(op["documentation"].as_str().unwrap_or("")),
                },
            );
        }
        Ok(Self { shapes, operations })
    }

    fn shape(&self, name: &str) -> Result<&Value> {
        self.shapes
            .get(name)
            .with_context(|| format!("unknown shape {name}"))
    }
}

/// Strips HTML and keeps the first sentence of a documentation string.
pub fn first_sentence(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.find(". ") {
        Some(i) => text[..=i].to_owned(),
        None => text,
    }
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// camelCase / PascalCase / acronym-heavy names to snake_case:
/// `privateIPv4Address` → `private_ipv4_address`, `taskARN` → `task_arn`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some(p) if p.is_ascii_lowercase() => true,
                Some(p) if p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    // `IPv4` splits as `i_pv4`; fold the acronym back together.
    let out = out.replace("i_pv4", "ipv4").replace("i_pv6", "ipv6");
    if RUST_KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

/// An enum value to a Rust variant name: `awsvpc` → `Awsvpc`,
/// `CMD-SHELL` → `CmdShell`, `json-file` → `JsonFile`, `1.4.0` → `V1_4_0`.
pub fn variant_name(value: &str) -> String {
    let mut out = String::new();
    let mut upper_next = true;
    // A separator between two digits must survive (`1.4.0` ≠ `14.0`).
    let mut digit_then_separator = false;
    let all_caps = !value.chars().any(|c| c.is_ascii_lowercase());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            if digit_then_separator && c.is_ascii_digit() {
                out.push('_');
            }
            digit_then_separator = false;
            if upper_next {
                out.push(c.to_ascii_uppercase());
            } else if all_caps {
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
            upper_next = false;
        } else {
            digit_then_separator = out.chars().last().is_some_and(|l| l.is_ascii_digit());
            upper_next = true;
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

/// Which shapes can derive `Default` (all members optional, scalar or
/// themselves defaultable; no required enum).
fn defaultable(model: &Model, name: &str, memo: &mut BTreeMap<String, bool>) -> bool {
    if let Some(&d) = memo.get(name) {
        return d;
    }
    memo.insert(name.to_owned(), true); // recursion guard
    let shape = &model.shapes[name];
    let result = match shape["type"].as_str() {
        Some("string") => shape.get("enum").is_none(),
        Some("structure") => {
            let required: BTreeSet<&str> = required_members(shape);
            shape["members"].as_object().is_some_and(|members| {
                members.iter().all(|(m, spec)| {
                    !required.contains(m.as_str())
                        || defaultable(model, spec["shape"].as_str().unwrap_or(""), memo)
                })
            })
        }
        _ => true,
    };
    memo.insert(name.to_owned(), result);
    result
}

fn required_members(shape: &Value) -> BTreeSet<&str> {
    shape["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// How a member of a given shape is written, and whether it is optional.
fn rust_type(model: &Model, shape_name: &str) -> Result<(String, bool)> {
    let shape = model.shape(shape_name)?;
    let boxed = shape["box"].as_bool().unwrap_or(false);
    let ty = match shape["type"].as_str().unwrap_or("") {
        "string" if shape.get("enum").is_some() => return Ok((shape_name.to_owned(), true)),
        "string" => return Ok(("String".into(), true)),
        "integer" => "i32",
        "long" => "i64",
        "double" | "float" => "f64",
        "boolean" => "bool",
        "timestamp" => return Ok(("crate::Timestamp".into(), true)),
        "blob" => return Ok(("String".into(), true)),
        "structure" if shape["document"].as_bool() == Some(true) => {
            return Ok(("serde_json::Value".into(), true));
        }
        "structure" => return Ok((shape_name.to_owned(), true)),
        "list" => {
            let (inner, _) = rust_type(model, shape["member"]["shape"].as_str().unwrap_or(""))?;
            return Ok((format!("Vec<{inner}>"), true));
        }
        "map" => {
            let (inner, _) = rust_type(model, shape["value"]["shape"].as_str().unwrap_or(""))?;
            return Ok((format!("BTreeMap<String, {inner}>"), true));
        }
        other => bail!("shape {shape_name} has unsupported type {other}"),
    };
    // Non-boxed scalars are always present on the wire.
    Ok((ty.to_owned(), boxed))
}

/// The generated Rust module with every wire type.
pub fn generate_types(model: &Model) -> Result<String> {
    let mut out = String::new();
    out.push_str(
        "// @generated by `cargo run -p xtask -- codegen` from the botocore ECS model\n\
         // (botocore 1.44.8, model/ecs-2014-11-13.service-2.json.gz). Do not edit.\n\n\
         //! ECS wire types, generated from the botocore service model.\n\n\
         #![allow(clippy::large_enum_variant, clippy::struct_excessive_bools, missing_docs)]\n\n\
         use std::collections::BTreeMap;\n\n\
         use serde::{Deserialize, Serialize};\n\n",
    );
    let mut memo = BTreeMap::new();
    let inputs: BTreeSet<&str> = model
        .operations
        .values()
        .filter_map(|op| op.input.as_deref())
        .collect();
    for (name, shape) in &model.shapes {
        match shape["type"].as_str() {
            Some("string") if shape.get("enum").is_some() => {
                write_enum(&mut out, name, shape)?;
            }
            Some("structure") if shape["document"].as_bool() != Some(true) => {
                let default = defaultable(model, name, &mut memo);
                let is_input = inputs.contains(name.as_str());
                write_struct(model, &mut out, name, shape, default, is_input)?;
            }
            _ => {}
        }
    }
    write_operations(model, &mut out)?;
    Ok(out)
}

fn write_doc(out: &mut String, html: Option<&str>, indent: &str) {
    let doc = first_sentence(html.unwrap_or(""));
    if !doc.is_empty() {
        let _ = writeln!(out, "{indent}/// {}", doc.replace('\n', " "));
    }
}

fn write_enum(out: &mut String, name: &str, shape: &Value) -> Result<()> {
    let values: Vec<&str> = shape["enum"]
        .as_array()
        .context("enum without values")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    write_doc(out, shape["documentation"].as_str(), "");
    let _ = writeln!(
        out,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]\npub enum {name} {{"
    );
    let mut seen = BTreeSet::new();
    let mut variants = Vec::new();
    for v in &values {
        let mut variant = variant_name(v);
        while !seen.insert(variant.clone()) {
            variant.push('_');
        }
        let _ = writeln!(out, "    #[serde(rename = {v:?})]\n    {variant},");
        variants.push((variant, *v));
    }
    out.push_str("}\n\n");
    let _ = writeln!(out, "impl {name} {{");
    let _ = writeln!(
        out,
        "    pub const ALL: &'static [{name}] = &[{}];",
        variants
            .iter()
            .map(|(v, _)| format!("{name}::{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str("    /// The exact wire spelling.\n    pub fn as_str(self) -> &'static str {\n        match self {\n");
    for (variant, value) in &variants {
        let _ = writeln!(out, "            {name}::{variant} => {value:?},");
    }
    out.push_str("        }\n    }\n");
    out.push_str("    /// Parses the exact wire spelling.\n    pub fn parse(s: &str) -> Option<Self> {\n        match s {\n");
    for (variant, value) in &variants {
        let _ = writeln!(out, "            {value:?} => Some({name}::{variant}),");
    }
    out.push_str("            _ => None,\n        }\n    }\n}\n\n");
    let _ = writeln!(
        out,
        "impl std::fmt::Display for {name} {{\n    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{\n        f.write_str(self.as_str())\n    }}\n}}\n"
    );
    Ok(())
}

fn write_struct(
    model: &Model,
    out: &mut String,
    name: &str,
    shape: &Value,
    default: bool,
    is_input: bool,
) -> Result<()> {
    let required = required_members(shape);
    write_doc(out, shape["documentation"].as_str(), "");
    let derives = if default {
        "Debug, Clone, PartialEq, Default, Serialize, Deserialize"
    } else {
        "Debug, Clone, PartialEq, Serialize, Deserialize"
    };
    let _ = writeln!(out, "#[derive({derives})]\npub struct {name} {{");
    let members = shape["members"]
        .as_object()
        .context("structure without members")?;
    for (member, spec) in members {
        let member_shape = spec["shape"].as_str().context("member without shape")?;
        let (ty, optional_by_type) = rust_type(model, member_shape)?;
        let member_boxed = spec["box"].as_bool().unwrap_or(false);
        // A request must tell "absent" from "0" or "false" (maxResults: 0
        // is an error, a missing maxResults is the default), so every
        // member of an operation's input is optional unless required.
        let optional =
            !required.contains(member.as_str()) && (optional_by_type || member_boxed || is_input);
        write_doc(out, spec["documentation"].as_str(), "    ");
        let field = snake_case(member);
        if optional {
            let _ = writeln!(
                out,
                "    #[serde(rename = {member:?}, default, skip_serializing_if = \"Option::is_none\")]\n    pub {field}: Option<{ty}>,"
            );
        } else if required.contains(member.as_str()) {
            let _ = writeln!(
                out,
                "    #[serde(rename = {member:?})]\n    pub {field}: {ty},"
            );
        } else {
            let _ = writeln!(
                out,
                "    #[serde(rename = {member:?}, default)]\n    pub {field}: {ty},"
            );
        }
    }
    out.push_str("}\n\n");
    Ok(())
}

fn write_operations(model: &Model, out: &mut String) -> Result<()> {
    out.push_str("/// Every operation of the ECS API.\n");
    out.push_str("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\npub enum Operation {\n");
    for (name, op) in &model.operations {
        if !op.summary.is_empty() {
            let _ = writeln!(out, "    /// {}", op.summary);
        }
        let _ = writeln!(out, "    {name},");
    }
    out.push_str("}\n\nimpl Operation {\n");
    let _ = writeln!(
        out,
        "    pub const ALL: &'static [Operation] = &[{}];",
        model
            .operations
            .keys()
            .map(|n| format!("Operation::{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str("    /// The name used in `X-Amz-Target`.\n    pub fn name(self) -> &'static str {\n        match self {\n");
    for name in model.operations.keys() {
        let _ = writeln!(out, "            Operation::{name} => {name:?},");
    }
    out.push_str("        }\n    }\n");
    out.push_str("    pub fn from_name(name: &str) -> Option<Self> {\n        match name {\n");
    for name in model.operations.keys() {
        let _ = writeln!(out, "            {name:?} => Some(Operation::{name}),");
    }
    out.push_str("            _ => None,\n        }\n    }\n");
    out.push_str("    /// The input and output shape names.\n    pub fn shapes(self) -> (Option<&'static str>, Option<&'static str>) {\n        match self {\n");
    for (name, op) in &model.operations {
        let _ = writeln!(
            out,
            "            Operation::{name} => ({:?}, {:?}),",
            op.input, op.output
        );
    }
    out.push_str("        }\n    }\n}\n");
    Ok(())
}

/// `docs/api-coverage.md`: every operation and whether Berth implements it.
pub fn generate_coverage(model: &Model, implemented: &dyn Fn(&str) -> bool) -> String {
    let total = model.operations.len();
    let done = model.operations.keys().filter(|n| implemented(n)).count();
    let mut out = format!(
        "# ECS API coverage\n\n\
         Generated by `cargo run -p xtask -- codegen` from the botocore ECS model (botocore 1.44.8); \
         a test fails when this file is out of date.\n\n\
         **{done} of {total} operations implemented.**\n\n\
         | Operation | Status | Summary |\n|---|---|---|\n"
    );
    for (name, op) in &model.operations {
        let status = if implemented(name) {
            "implemented"
        } else {
            "not yet"
        };
        let summary = op.summary.replace('|', "\\|");
        let _ = writeln!(out, "| {name} | {status} | {summary} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_handles_acronyms() {
        assert_eq!(snake_case("privateIPv4Address"), "private_ipv4_address");
        assert_eq!(snake_case("clusterArn"), "cluster_arn");
        assert_eq!(snake_case("type"), "r#type");
        assert_eq!(snake_case("registeredAt"), "registered_at");
        assert_eq!(snake_case("ipv6Address"), "ipv6_address");
        assert_eq!(
            snake_case("enableECSManagedTags"),
            "enable_ecs_managed_tags"
        );
    }

    #[test]
    fn variant_names() {
        assert_eq!(variant_name("awsvpc"), "Awsvpc");
        assert_eq!(variant_name("ACTIVE"), "Active");
        assert_eq!(variant_name("CMD-SHELL"), "CmdShell");
        assert_eq!(variant_name("json-file"), "JsonFile");
        assert_eq!(variant_name("1.4.0"), "V1_4_0");
        assert_eq!(variant_name("FARGATE_SPOT"), "FargateSpot");
        assert_eq!(variant_name("EC2_AUTOSCALING"), "Ec2Autoscaling");
        assert_eq!(
            variant_name("WINDOWS_SERVER_2019_FULL"),
            "WindowsServer2019Full"
        );
    }
}
