//! Resolvers: merge siblings into one value, for callers that want one.

use quickv_core::version::Value;

/// Merges concurrent values into one. Called with two or more values; the result is written
/// back with the context of the read, which supersedes every sibling merged.
pub trait Resolver {
    /// The merged value.
    fn resolve(&self, siblings: &[Value]) -> Value;
}

impl<F: Fn(&[Value]) -> Value> Resolver for F {
    fn resolve(&self, siblings: &[Value]) -> Value {
        self(siblings)
    }
}

/// Keeps the longest value (ties: the greatest bytes). A simple, deterministic choice for
/// values that only grow, such as append-only logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct LongestValue;

impl Resolver for LongestValue {
    fn resolve(&self, siblings: &[Value]) -> Value {
        siblings
            .iter()
            .max_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_ref().cmp(b.as_ref())))
            .cloned()
            .unwrap_or_else(|| Value::from(Vec::new()))
    }
}
