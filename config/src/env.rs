//! Environment overrides: `SETTLEPROOF__API__LISTEN=127.0.0.1:9000` sets `api.listen`.
//! Segments are separated by a double underscore and lower-cased; a value is read as a TOML
//! value when it parses as one (number, boolean, array) and as a string otherwise. A number
//! segment indexes a list of tables: `SETTLEPROOF__CHAINS__1__RPC_QUORUM=2` sets
//! `chains[1].rpc_quorum`.

use crate::ConfigError;
use toml::{Table, Value};

const PREFIX: &str = "SETTLEPROOF__";

pub(crate) fn apply_overrides(
    root: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in vars {
        let Some(path) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty path segment; use SETTLEPROOF__SECTION__FIELD".into(),
            });
        }
        let value = parse_value(&raw);
        set(root, &keys, value).map_err(|message| ConfigError::Env { var: var.clone(), message })?;
    }
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

fn set(table: &mut Table, keys: &[String], value: Value) -> Result<(), String> {
    match keys {
        [] => Err("empty path".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, index, rest @ ..] if !rest.is_empty() && index.parse::<usize>().is_ok() => {
            let i: usize = index.parse().map_err(|_| format!("`{index}` is not an index"))?;
            match table.get_mut(first.as_str()) {
                Some(Value::Array(list)) => match list.get_mut(i) {
                    Some(Value::Table(t)) => set(t, rest, value),
                    Some(_) => Err(format!("`{first}[{i}]` is not a section")),
                    None => Err(format!("`{first}` has {} entries, no index {i}", list.len())),
                },
                _ => Err(format!("`{first}` is not a list of sections")),
            }
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(t) => set(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_nested_values_with_types() {
        let mut t: Table = "[api]\nlisten = \"a\"\n".parse().expect("toml");
        apply_overrides(
            &mut t,
            vars(&[
                ("SETTLEPROOF__API__LISTEN", "127.0.0.1:1"),
                ("SETTLEPROOF__CHAIN__CONFIRMATIONS", "7"),
                ("OTHER", "x"),
            ]),
        )
        .expect("applies");
        assert_eq!(t["api"]["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(t["chain"]["confirmations"].as_integer(), Some(7));
        assert!(t.get("other").is_none());
    }

    #[test]
    fn a_number_segment_indexes_a_list_of_sections() {
        let mut t: Table = "[[chains]]\nchain_id = 1\n[[chains]]\nchain_id = 2\n".parse().expect("toml");
        apply_overrides(&mut t, vars(&[("SETTLEPROOF__CHAINS__1__RPC_QUORUM", "2")])).expect("applies");
        assert_eq!(t["chains"][1]["rpc_quorum"].as_integer(), Some(2));
        assert!(t["chains"][0].get("rpc_quorum").is_none());
        let err = apply_overrides(&mut t, vars(&[("SETTLEPROOF__CHAINS__5__RPC_QUORUM", "2")])).expect_err("no entry");
        assert!(err.to_string().contains("no index 5"), "{err}");
    }

    #[test]
    fn refuses_to_descend_into_a_value() {
        let mut t: Table = "api = 3\n".parse().expect("toml");
        let err = apply_overrides(&mut t, vars(&[("SETTLEPROOF__API__LISTEN", "x")])).expect_err("not a table");
        assert!(err.to_string().contains("SETTLEPROOF__API__LISTEN"), "{err}");
    }
}
