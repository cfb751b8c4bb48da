//! JSON Schema validation of a context's state (crate `jsonschema`).
//!
//! A schema attached to a context governs its whole state, seen as one JSON object
//! `{key: value}`. The writer checks it against the state a commit would leave, and a commit
//! that breaks it is refused with the key and the rule, before anything is written. Compiled
//! validators are cached by schema text on the writer thread.

use crate::error::{Error, InvalidInput};
use crate::state::ContextState;
use std::collections::HashMap;

/// Compiled schemas kept at most (the cache is cleared when it would grow past this).
const CACHE_MAX: usize = 256;

/// Compiles a schema, or says why it is not one.
pub fn compile(context: &str, schema: &str) -> Result<jsonschema::Validator, InvalidInput> {
    let bad = |reason: String| InvalidInput::Schema {
        context: context.to_string(),
        reason,
    };
    let json: serde_json::Value = serde_json::from_str(schema).map_err(|e| bad(e.to_string()))?;
    jsonschema::validator_for(&json).map_err(|e| bad(e.to_string()))
}

/// The context's state as the JSON object its schema is checked against.
pub fn as_json(state: &ContextState) -> serde_json::Value {
    let object = state
        .values()
        .map(|(k, v)| {
            // A value that is not JSON (MessagePack binary, say) is checked as null.
            let json = v
                .decode::<serde_json::Value>()
                .unwrap_or(serde_json::Value::Null);
            (k.to_string(), json)
        })
        .collect();
    serde_json::Value::Object(object)
}

/// Compiled validators by schema text.
#[derive(Default)]
pub(crate) struct SchemaCache {
    validators: HashMap<String, jsonschema::Validator>,
}

impl SchemaCache {
    /// Checks a context's state against its schema, if it has one.
    pub fn check(&mut self, context: &str, state: &ContextState) -> Result<(), Error> {
        let Some(schema) = state.schema() else {
            return Ok(());
        };
        if !self.validators.contains_key(schema) {
            if self.validators.len() >= CACHE_MAX {
                self.validators.clear();
            }
            let validator = compile(context, schema)?;
            self.validators.insert(schema.to_string(), validator);
        }
        let Some(validator) = self.validators.get(schema) else {
            return Ok(());
        };
        let instance = as_json(state);
        let violation = validator.iter_errors(&instance).next().map(|e| {
            let path = e.instance_path().to_string();
            let key = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            Error::SchemaViolation {
                context: context.to_string(),
                key,
                rule: e.kind().keyword().to_string(),
                message: e.to_string(),
            }
        });
        violation.map_or(Ok(()), Err)
    }
}
