//! Files of the older single-chain form: one `[chain]` table instead of `[[chains]]` entries.
//! Such a file loads as a list of that one chain, so a node upgrades without editing its
//! config. A file with both forms, or with neither, fails with the field named and the new
//! form shown.

use crate::{ConfigError, FieldError};
use toml::{Table, Value};

/// How the chain list is written; shown in the errors.
const NEW_FORM: &str = "write each chain as a `[[chains]]` entry, e.g.\n\n    [[chains]]\n    chain_id = 8453\n    name = \"base\"\n    rpc_endpoints = [\"https://rpc-a.example\", \"https://rpc-b.example\", \"https://rpc-c.example\"]\n    rpc_quorum = 2\n    payments_contract = \"0x…\"\n    settlement_contract = \"0x…\"\n    start_block = 1\n";

/// Moves a `[chain]` table into `chains = [ … ]`.
pub(crate) fn single_chain_to_list(root: &mut Table) -> Result<(), ConfigError> {
    let problem = |field: &str, what: &str| {
        ConfigError::Invalid(vec![FieldError { field: field.into(), message: format!("{what}; {NEW_FORM}") }])
    };
    match (root.remove("chain"), root.contains_key("chains")) {
        (Some(_), true) => Err(problem(
            "chain",
            "`[chain]` (or a SETTLEPROOF__CHAIN__* variable) is given beside `[[chains]]`; move its fields into a `[[chains]]` entry (variables: SETTLEPROOF__CHAINS__0__FIELD)",
        )),
        (Some(Value::Table(chain)), false) => {
            root.insert("chains".into(), Value::Array(vec![Value::Table(chain)]));
            Ok(())
        }
        (Some(_), false) => Err(problem("chain", "must be a table")),
        (None, true) => Ok(()),
        (None, false) => Err(problem("chains", "no chain is configured")),
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, EXAMPLE, NodeConfig};

    /// The example in the older single-chain form.
    fn single_chain_file() -> String {
        assert!(EXAMPLE.contains("[[chains]]"), "the example uses the list form");
        EXAMPLE.replacen("[[chains]]", "[chain]", 1)
    }

    #[test]
    fn a_single_chain_file_loads_as_a_list_of_one() {
        let old = NodeConfig::from_toml_str(&single_chain_file(), std::iter::empty()).expect("old form loads");
        let new = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("new form loads");
        assert_eq!(old.chains.len(), 1);
        assert_eq!(old.chains[0].chain_id, new.chains[0].chain_id);
        assert_eq!(old.chains[0].rpc_endpoints, new.chains[0].rpc_endpoints);
        let vars = vec![("SETTLEPROOF__CHAIN__CONFIRMATIONS".to_string(), "7".to_string())];
        let cfg = NodeConfig::from_toml_str(&single_chain_file(), vars).expect("old variables apply");
        assert_eq!(cfg.chains[0].confirmations, 7);
    }

    #[test]
    fn both_forms_or_neither_name_the_field_and_show_the_new_form() {
        let both = format!("{}\n[chain]\nchain_id = 1\n", EXAMPLE);
        let Err(ConfigError::Invalid(errs)) = NodeConfig::from_toml_str(&both, std::iter::empty()) else {
            panic!("both forms are refused");
        };
        assert_eq!(errs[0].field, "chain");
        assert!(errs[0].message.contains("[[chains]]"), "{}", errs[0].message);
        let start = EXAMPLE.find("[[chains]]").expect("chains entry");
        let end = EXAMPLE[start..].find("\n[rounds]").expect("next section") + start;
        let neither = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
        let Err(ConfigError::Invalid(errs)) = NodeConfig::from_toml_str(&neither, std::iter::empty()) else {
            panic!("no chain is refused");
        };
        assert_eq!(errs[0].field, "chains");
        assert!(errs[0].message.contains("chain_id = "), "{}", errs[0].message);
    }
}
