//! Environment overrides: `SETTLEPROOF__API__LISTEN=127.0.0.1:9000` sets `api.listen`.
//! Segments are separated by a double underscore and lower-cased; a value is read as a TOML
//! value when it parses as one (number, boolean, array) and as a string otherwise.

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
    fn refuses_to_descend_into_a_value() {
        let mut t: Table = "api = 3\n".parse().expect("toml");
        let err = apply_overrides(&mut t, vars(&[("SETTLEPROOF__API__LISTEN", "x")])).expect_err("not a table");
        assert!(err.to_string().contains("SETTLEPROOF__API__LISTEN"), "{err}");
    }
}
