//! Typed configuration of a settleproof node.
//!
//! Loading happens in a documented order: the TOML file, then environment overrides
//! (`SETTLEPROOF__SECTION__FIELD=value`, see [`env`]), then [`validate`] checks every field and
//! reports all problems at once, each naming its path and the fix. A file of the single-chain
//! form (one `[chain]` table) is read as a `[[chains]]` list of that chain ([`legacy`]).
//!
//! ```
//! let cfg = settleproof_config::NodeConfig::from_toml_str(settleproof_config::EXAMPLE, std::iter::empty());
//! assert!(cfg.is_ok());
//! ```

mod env;
mod error;
mod legacy;
mod model;
pub mod netpolicy;
mod secret;
mod validate;

pub use error::{ConfigError, FieldError};
pub use model::*;
pub use secret::Secret;
pub use validate::{merchant_problems, new_merchant_problems};

/// A complete, valid example configuration (also used by the docs and tests).
pub const EXAMPLE: &str = include_str!("../example.toml");

impl NodeConfig {
    /// Reads `path`, applies the `SETTLEPROOF__*` variables of `vars`, validates.
    pub fn load(path: &std::path::Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml_str(&text, vars)
    }

    /// Parses TOML text, applies environment overrides, validates.
    pub fn from_toml_str(text: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        // Parse errors quote the offending text, which may be a URL with an API key.
        let parse = |e: toml::de::Error| ConfigError::Parse(netpolicy::mask_urls(&e.to_string()));
        let mut value: toml::Table = text.parse().map_err(parse)?;
        env::apply_overrides(&mut value, vars)?;
        legacy::single_chain_to_list(&mut value)?;
        let cfg: NodeConfig = value.try_into().map_err(parse)?;
        validate::validate(&cfg)?;
        Ok(cfg)
    }
}
