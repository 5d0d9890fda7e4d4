//! Every conversion between JavaScript values and core types.

use js_sys::{Array, Object, Reflect, TypeError, Uint8Array};
use quickv_core::identity::NodeId;
use quickv_core::membership::{Membership, NodeInfo};
use quickv_core::ring::PreferenceList;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** A ring member as passed to `new Ring(...)`. */
export interface NodeSpec {
  id: string;
  address: string;
  zone: string;
  /** Positive relative weight. */
  capacity: number;
}
"#;

/// A key's replicas and fallbacks, by node id.
#[wasm_bindgen(js_name = PreferenceList)]
pub struct PreferenceListJs {
    primaries: Vec<String>,
    fallbacks: Vec<String>,
}

#[wasm_bindgen(js_class = PreferenceList)]
impl PreferenceListJs {
    /// The key's replicas, in order.
    #[wasm_bindgen(getter)]
    pub fn primaries(&self) -> Vec<String> {
        self.primaries.clone()
    }

    /// The nodes that stand in for unreachable replicas, in order.
    #[wasm_bindgen(getter)]
    pub fn fallbacks(&self) -> Vec<String> {
        self.fallbacks.clone()
    }
}

/// The bytes of a key or value given as a string (its UTF-8 bytes) or a `Uint8Array` (its
/// bytes); anything else throws a `TypeError` naming `what` (a number or an object would
/// otherwise stand for bytes nobody meant).
pub(crate) fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = value.as_string() {
        return Ok(text.into_bytes());
    }
    if let Some(array) = value.dyn_ref::<Uint8Array>() {
        return Ok(array.to_vec());
    }
    let got = value.js_typeof().as_string().unwrap_or_default();
    let got = if value.is_null() { "null".to_owned() } else { got };
    Err(TypeError::new(&format!("{what} must be a string or a Uint8Array, not {got}")).into())
}

pub(crate) fn preference_list(prefs: &PreferenceList) -> PreferenceListJs {
    let ids = |v: &[NodeId]| v.iter().map(|n| n.to_string()).collect();
    PreferenceListJs { primaries: ids(prefs.primaries()), fallbacks: ids(prefs.fallbacks()) }
}

/// `[{ id, address, zone, capacity }]` into a membership.
pub(crate) fn membership(nodes: &JsValue) -> Result<Membership, JsError> {
    if !Array::is_array(nodes) {
        return Err(JsError::new("nodes must be an array of { id, address, zone, capacity }"));
    }
    let mut membership = Membership::new();
    for (i, node) in Array::from(nodes).iter().enumerate() {
        let text = |field: &str| -> Result<String, JsError> {
            Reflect::get(&node, &JsValue::from_str(field))
                .ok()
                .and_then(|v| v.as_string())
                .ok_or_else(|| JsError::new(&format!("nodes[{i}].{field} must be a string")))
        };
        let capacity = Reflect::get(&node, &JsValue::from_str("capacity"))
            .ok()
            .and_then(|v| v.as_f64())
            .filter(|c| c.fract() == 0.0 && *c >= 1.0 && *c <= f64::from(u32::MAX))
            .ok_or_else(|| JsError::new(&format!("nodes[{i}].capacity must be a whole number of at least 1")))?;
        let info = NodeInfo::new(&text("id")?, &text("address")?, &text("zone")?, capacity as u32)
            .map_err(|e| JsError::new(&format!("nodes[{i}]: {e}")))?;
        if membership.node(&info.id).is_some() {
            return Err(JsError::new(&format!("nodes[{i}]: duplicate id {}", info.id)));
        }
        membership.upsert(info).map_err(|e| JsError::new(&format!("nodes[{i}]: {e}")))?;
    }
    Ok(membership)
}

pub(crate) fn shares(shares: &[(NodeId, f64)]) -> Result<Object, JsError> {
    let out = Object::new();
    for (id, share) in shares {
        Reflect::set(&out, &JsValue::from_str(id.as_str()), &JsValue::from_f64(*share))
            .map_err(|_| JsError::new("could not build the shares object"))?;
    }
    Ok(out)
}
