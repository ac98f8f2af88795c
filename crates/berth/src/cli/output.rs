//! How client verbs print: plain tables for people, or the raw ECS response
//! JSON for scripts. Every verb fetches raw JSON once; the table view decodes
//! it into the generated types, so both views show the same answer.

use anyhow::Context as _;
use berth_client::{Client, EcsRequest};
use berth_types::Failure;
use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl Output {
    /// Prints `raw` as pretty JSON, or decodes it as `T` and prints the
    /// table `render` makes of it.
    pub fn emit<T: DeserializeOwned>(
        self,
        raw: Value,
        render: impl FnOnce(T) -> String,
    ) -> anyhow::Result<()> {
        match self {
            Output::Json => println!("{}", serde_json::to_string_pretty(&raw)?),
            Output::Table => {
                let decoded = serde_json::from_value(raw).context("unexpected response shape")?;
                println!("{}", render(decoded));
            }
        }
        Ok(())
    }
}

/// Calls the operation of `request`, keeping the response as raw JSON.
pub async fn call_raw<R: EcsRequest>(client: &Client, request: &R) -> anyhow::Result<Value> {
    Ok(client.call_op(R::OPERATION, request).await?)
}

/// Joins the responses of a paginated or batched call into one response of
/// the same shape by concatenating their `keys` arrays; other fields (such
/// as `nextToken`) are dropped.
pub fn merge_pages(pages: impl IntoIterator<Item = Value>, keys: &[&str]) -> Value {
    let mut merged = serde_json::Map::new();
    for key in keys {
        merged.insert((*key).to_owned(), Value::Array(Vec::new()));
    }
    for mut page in pages {
        for key in keys {
            if let (Some(Value::Array(items)), Some(Value::Array(all))) =
                (page.get_mut(*key).map(Value::take), merged.get_mut(*key))
            {
                all.extend(items);
            }
        }
    }
    Value::Object(merged)
}

/// A borderless table, like `docker ps`: columns separated by spaces, no
/// colors, no wrapping, so it reads the same in a terminal and in a pipe.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING).set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Rows of `NAME  value`, skipping the names without a value.
pub fn key_values(rows: &[(&str, Option<String>)]) -> String {
    let mut table = Table::new();
    table.load_style(NOTHING);
    for (name, value) in rows {
        if let Some(value) = value {
            table.add_row([*name, value.as_str()]);
        }
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

/// Aligns the given columns to the right (for numbers).
pub fn right_align(table: &mut Table, columns: &[usize]) {
    for &index in columns {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// ECS reports per-item problems (`MISSING` clusters, …) beside the results;
/// a table has no place for them, so they go to stderr.
pub fn warn_failures(failures: Option<&[Failure]>) {
    for failure in failures.unwrap_or_default() {
        eprintln!(
            "warning: {}: {}{}",
            failure.arn.as_deref().unwrap_or("-"),
            failure.reason.as_deref().unwrap_or("failed"),
            failure
                .detail
                .as_deref()
                .map(|detail| format!(" ({detail})"))
                .unwrap_or_default(),
        );
    }
}

/// The text of an optional cell.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pages_are_concatenated() {
        let merged = merge_pages(
            [
                json!({"clusters": [1, 2], "failures": [], "nextToken": "t"}),
                json!({"clusters": [3], "failures": [{"reason": "MISSING"}]}),
                json!({}),
            ],
            &["clusters", "failures"],
        );
        assert_eq!(
            merged,
            json!({"clusters": [1, 2, 3], "failures": [{"reason": "MISSING"}]})
        );
        assert_eq!(merge_pages([], &["x"]), json!({"x": []}));
    }

    #[test]
    fn tables_are_plain_columns() {
        let mut t = table(["NAME", "COUNT"]);
        t.add_row(["a", "1"]).add_row(["longer", "10"]);
        right_align(&mut t, &[1]);
        assert_eq!(t.trim_fmt(), "NAME    COUNT\na           1\nlonger     10");
    }
}
