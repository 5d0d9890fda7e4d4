//! `quickv` whose reader went away (`quickv ... | head -c 1`): it stops quietly with status 141
//! (128 + SIGPIPE), as Unix tools do, instead of printing "Broken pipe" or panicking.

use std::process::{Command, Stdio};

/// Runs quickv with `args`, its standard output a pipe nobody reads (closed before it starts).
fn with_reader_gone(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_quickv"))
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("quickv runs")
}

#[test]
fn help_and_version_stop_quietly_when_nobody_reads_them() {
    for args in [&["--help"][..], &["--version"], &["get", "--help"]] {
        let out = with_reader_gone(args);
        assert_eq!(out.status.code(), Some(141), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A usage error still goes to stderr with its status.
    let out = with_reader_gone(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
}
