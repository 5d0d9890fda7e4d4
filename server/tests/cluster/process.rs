//! Process-level test: `quickv-node dev` as a real process, driven with the real `quickv` tool.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `quickv` binary next to `quickv-node`, built (or brought up to date) once per test run:
/// a binary left by an earlier build may speak an older wire version.
fn quickv_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let node = PathBuf::from(env!("CARGO_BIN_EXE_quickv-node"));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--locked", "-p", "quickv-cli", "--bin", "quickv"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building quickv failed");
            node.with_file_name("quickv")
        })
        .clone()
}

/// A port for test `slot` (0 to 3, four ports each), distinct between the tests of this file,
/// which run at once, and spread by the process id between runs.
fn test_port(slot: u16) -> u16 {
    10_000 + (std::process::id() % 3_000) as u16 * 16 + slot * 4
}

struct Dev {
    child: Child,
    seeds: String,
    ca: String,
}

impl Dev {
    /// Starts `quickv-node dev` with three nodes and waits for the line it prints for clients.
    fn start(dir: &Path, port: u16) -> Dev {
        Dev::start_nodes(dir, port, 3)
    }

    /// Starts `quickv-node dev --nodes NODES`.
    fn start_nodes(dir: &Path, port: u16, nodes: u16) -> Dev {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quickv-node"))
            .args(["dev", "--nodes", &nodes.to_string(), "--base-port", &port.to_string(), "--dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("quickv-node starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("export ") {
                let mut seeds = String::new();
                let mut ca = String::new();
                for pair in rest.split_whitespace() {
                    match pair.split_once('=') {
                        Some(("QUICKV_SEEDS", v)) => seeds = v.into(),
                        Some(("QUICKV_CA", v)) => ca = v.into(),
                        _ => {}
                    }
                }
                return Dev { child, seeds, ca };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("quickv-node dev exited without printing the client line");
    }

    fn quickv(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = Command::new(quickv_binary());
        command.args(args).env("QUICKV_SEEDS", &self.seeds).env("QUICKV_CA", &self.ca);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("quickv runs");
        if let Some(bytes) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn signal(&mut self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[test]
fn dev_cluster_serves_the_quickv_tool_and_keeps_writes_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_port(0);
    let mut dev = Dev::start(dir.path(), port);

    let put = dev.quickv(&["put", "greeting", "hello"], None);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let context = text(&put.stdout);
    assert!(!context.is_empty());

    let get = dev.quickv(&["get", "greeting"], None);
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(text(&get.stdout), "hello");

    // A value from stdin, with the context: replaces the first.
    let put = dev.quickv(&["put", "greeting", "-", "--context", &context], Some(b"hi there"));
    assert!(put.status.success(), "{}", text(&put.stderr));
    let json = dev.quickv(&["--json", "get", "greeting"], None);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(parsed["key"], "greeting");
    assert_eq!(parsed["values"], serde_json::json!(["aGkgdGhlcmU="]));
    assert!(parsed["context"].as_str().is_some_and(|c| !c.is_empty()));

    let status = dev.quickv(&["status"], None);
    assert!(text(&status.stdout).contains("33.3%"), "{}", text(&status.stdout));

    // SIGKILL the whole cluster, start it again from its folder: the write is there.
    dev.signal("-KILL");
    let _ = dev.child.wait();
    let mut dev = Dev::start(dir.path(), port);
    let get = dev.quickv(&["get", "greeting"], None);
    assert_eq!(text(&get.stdout), "hi there", "{}", text(&get.stderr));

    let delete = dev.quickv(&["delete", "greeting"], None);
    assert!(delete.status.success(), "{}", text(&delete.stderr));
    let get = dev.quickv(&["get", "greeting"], None);
    assert_eq!(get.status.code(), Some(1), "absent keys exit with status 1");
    let json = dev.quickv(&["--json", "get", "greeting"], None);
    assert_eq!(json.status.code(), Some(1));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(parsed["values"], serde_json::json!([]));

    // A clean stop on SIGTERM.
    dev.signal("-TERM");
    let exit = dev.child.wait().unwrap();
    assert!(exit.success(), "quickv-node dev exited with {exit}");
}

/// 3.9: a one-node dev cluster's default store takes writes; a strict store no write could meet
/// is refused, and one that needs more nodes is created with a warning.
#[test]
fn a_one_node_dev_cluster_takes_writes_and_warns_about_stores_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_port(1);
    let dev = Dev::start_nodes(dir.path(), port, 1);
    let put = dev.quickv(&["put", "greeting", "hello"], None);
    assert!(put.status.success(), "{}", text(&put.stderr));
    assert_eq!(text(&dev.quickv(&["get", "greeting"], None).stdout), "hello");
    let strict = dev.quickv(&["store", "create", "orders", "--preset", "strict"], None);
    assert!(!strict.status.success());
    assert!(text(&strict.stderr).contains("no write could succeed"), "{}", text(&strict.stderr));
    let eventual = dev.quickv(&["store", "create", "carts", "--preset", "eventual"], None);
    assert!(eventual.status.success(), "{}", text(&eventual.stderr));
    assert!(
        text(&eventual.stderr).contains("warning: store carts: keys have fewer than N=3"),
        "{}",
        text(&eventual.stderr)
    );
}

#[test]
fn init_and_run_start_nodes_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let node_bin = env!("CARGO_BIN_EXE_quickv-node");
    let init = Command::new(node_bin).args(["init", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(init.status.success(), "{}", text(&init.stderr));
    assert!(dir.path().join("ca.pem").exists() && dir.path().join("ca.key").exists());

    let port = test_port(2);
    let addr = |i: u16| format!("127.0.0.1:{}", port + i);
    let mut nodes: Vec<Child> = (0..2u16)
        .map(|i| {
            let mut command = Command::new(node_bin);
            command.arg("run").arg("--dir").arg(dir.path().join(format!("n{i}"))).arg("--ca-dir").arg(dir.path());
            command.args(["--listen", &addr(i), "--zone", &format!("z{i}"), "--capacity", &(i + 1).to_string()]);
            if i > 0 {
                command.args(["--seeds", &addr(0)]);
            }
            command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
        })
        .collect();
    let quickv = |args: &[&str]| {
        Command::new(quickv_binary())
            .args(args)
            .env("QUICKV_SEEDS", addr(0))
            .env("QUICKV_CA", dir.path().join("ca.pem"))
            .output()
            .unwrap()
    };
    // Both nodes appear, with shares in proportion to capacity (1:2).
    let mut listing = String::new();
    for _ in 0..100 {
        let status = quickv(&["--json", "status"]);
        listing = text(&status.stdout);
        if status.status.success() && listing.matches("\"up\"").count() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let parsed: serde_json::Value = serde_json::from_str(&listing).expect("status JSON");
    let shares: Vec<f64> = parsed["nodes"].as_array().unwrap().iter().map(|n| n["share"].as_f64().unwrap()).collect();
    assert_eq!(shares.len(), 2, "{listing}");
    assert!((shares[1] / shares[0] - 2.0).abs() < 0.1, "{listing}");
    let put = quickv(&["put", "k", "v"]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    assert_eq!(text(&quickv(&["get", "k"]).stdout), "v");
    for node in &mut nodes {
        let _ = node.kill();
        let _ = node.wait();
    }
}

/// Issue 8, 1.5: a caller's pooled connection to a node that was SIGKILLed and restarted used to
/// wait out QUIC's 30 s idle timeout, at one replica timeout per request. The restarted node now
/// resets the old connection at once (its stateless-reset key and connection-id key come from its
/// own key: with a connection-id key of its own per process, the new process dropped the old ids
/// unanswered, found in review), and a call that times out drops its pooled connection: the node
/// serves the caller again within moments of starting, well before a call's timeout.
#[test]
fn a_node_restarted_after_sigkill_serves_pooled_callers_again_at_once() {
    use quickv_client::tls::{self, ClusterCa};
    use quickv_client::transport::Transport;
    use quickv_core::wire::{Request, Response};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let node_bin = env!("CARGO_BIN_EXE_quickv-node");
    let init = Command::new(node_bin).args(["init", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(init.status.success(), "{}", text(&init.stderr));
    let port = test_port(3);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = || {
        let mut command = Command::new(node_bin);
        command.arg("run").arg("--dir").arg(dir.path().join("n0")).arg("--ca-dir").arg(dir.path());
        command.args(["--listen", &addr.to_string()]);
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ca = ClusterCa::from_pem_file(dir.path().join("ca.pem")).unwrap();
    let config = tls::client_config(&ca, None).unwrap();
    let _guard = runtime.enter();
    // The default replica timeout: a caller that had to wait a call out would take over 2 s.
    let transport = Transport::client(config, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2)).unwrap();
    // Calls until one succeeds (at most `limit`); returns how long that took.
    let served_within = |limit: Duration| {
        runtime.block_on(async {
            let begun = Instant::now();
            while begun.elapsed() < limit {
                if let Ok(Response::Cluster(_)) = transport.call(addr, None, Request::Cluster).await {
                    return Some(begun.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
    };
    let mut node = start();
    served_within(Duration::from_secs(20)).expect("the node serves");
    let _ = node.kill();
    let _ = node.wait();
    let mut node = start();
    let again = served_within(Duration::from_secs(10));
    let _ = node.kill();
    let _ = node.wait();
    let again = again.expect("the restarted node serves the caller within 10 s");
    println!("a caller with a pooled connection was served again {again:?} after the restart began");
    // Reset at once by the restarted node (without that, the first call waits its timeout out).
    assert!(again < Duration::from_millis(1500), "served again after {again:?}");
}
