//! The bindings as JavaScript sees them, run under Node by wasm-bindgen-test-runner.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Object, Reflect};
use quickv_wasm::{Ring, key_token, key_token_of_text};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

fn node(id: &str, zone: &str, capacity: f64) -> JsValue {
    let o = Object::new();
    let fields = [
        ("id", JsValue::from_str(id)),
        ("address", JsValue::from_str("127.0.0.1:7100")),
        ("zone", JsValue::from_str(zone)),
        ("capacity", JsValue::from_f64(capacity)),
    ];
    for (k, v) in fields {
        Reflect::set(&o, &JsValue::from_str(k), &v).unwrap();
    }
    o.into()
}

fn nodes(list: &[(&str, &str, f64)]) -> JsValue {
    list.iter().map(|(i, z, c)| node(i, z, *c)).collect::<Array>().into()
}

#[wasm_bindgen_test]
fn key_tokens_match_core() {
    let bytes = |b: &[u8]| JsValue::from(js_sys::Uint8Array::from(b));
    assert_eq!(key_token(&bytes(b"")).unwrap(), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(key_token_of_text("cart:42"), key_token(&bytes(b"cart:42")).unwrap());
    assert_eq!(key_token(&JsValue::from_str("cart:42")).unwrap(), key_token(&bytes(b"cart:42")).unwrap());
    let wrong = key_token(&JsValue::from_f64(42.0)).unwrap_err();
    assert!(wasm_bindgen::JsCast::is_instance_of::<js_sys::TypeError>(&wrong), "{wrong:?}");
}

#[wasm_bindgen_test]
fn preference_lists_match_core() {
    let spec = [("a", "z1", 1.0), ("b", "z2", 2.0), ("c", "z3", 1.0), ("d", "z1", 1.0)];
    let ring = Ring::new(&nodes(&spec), Some(10)).unwrap();
    assert_eq!(ring.partition_count(), 1024);
    let prefs = ring.preference_list(&js_sys::Uint8Array::from(&b"cart:42"[..]).into(), 3, Some(1)).unwrap();
    let mut membership = quickv_core::membership::Membership::new();
    for (id, zone, c) in spec {
        membership
            .upsert(quickv_core::membership::NodeInfo::new(id, "127.0.0.1:7100", zone, c as u32).unwrap())
            .unwrap();
    }
    let core = quickv_core::ring::Ring::build(&membership, 10).unwrap();
    let expected = core.preference_list(quickv_core::token::Token::of(b"cart:42"), 3, 1);
    let ids = |v: &[quickv_core::identity::NodeId]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(prefs.primaries(), ids(expected.primaries()));
    assert_eq!(prefs.fallbacks(), ids(expected.fallbacks()));
}

#[wasm_bindgen_test]
fn bad_nodes_are_refused_with_clear_errors() {
    let err = |v: JsValue| match Ring::new(&v, None) {
        Ok(_) => panic!("accepted"),
        Err(e) => JsValue::from(e),
    };
    let message = |v: JsValue| Reflect::get(&err(v), &JsValue::from_str("message")).unwrap().as_string().unwrap();
    assert!(message(JsValue::from_str("x")).contains("must be an array"));
    assert!(message(nodes(&[("a", "z", 0.0)])).contains("capacity must be a whole number"));
    assert!(message(nodes(&[("a b", "z", 1.0)])).contains("invalid node id"));
    assert!(message(nodes(&[("a", "z", 1.0), ("a", "z", 1.0)])).contains("duplicate id"));
    assert!(message(nodes(&[])).contains("no node"));
}
