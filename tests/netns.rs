//! Parties in separate network namespaces (three "hosts" joined by a bridge
//! in a fourth namespace), one end-to-end run per scenario over TLS: encrypted
//! inference (five roles on three hosts), split learning (two hosts), and
//! federated averaging with secure aggregation (a server and three clients,
//! each on its own host).
//! Needs root and iproute2 (`ip`); skips with a printed reason otherwise
//! (and fails instead when `CI` is set, since CI runs as root).

mod common;

use common::last_json;
use std::process::{Command, Output, Stdio};

struct Netns {
    hosts: Vec<String>,
    bridge_ns: String,
    ips: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// `n` namespaces with addresses 10.<x>.<y>.1..n on one bridge.
    fn new(tag: &str, n: usize) -> Netns {
        let id = std::process::id() % 10_000;
        let bridge_ns = format!("ppml-{tag}{id}-br");
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        let (x, y) = (200 + id % 50, (id / 50) % 250);
        let mut hosts = Vec::new();
        let mut ips = Vec::new();
        for k in 0..n {
            let ns = format!("ppml-{tag}{id}-{k}");
            ip(&["netns", "add", &ns]);
            let (a, b) = (format!("v{tag}{id}h{k}"), format!("v{tag}{id}b{k}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &ns]);
            ip(&["link", "set", &b, "netns", &bridge_ns]);
            ip(&["-n", &bridge_ns, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &bridge_ns, "link", "set", &b, "up"]);
            let addr = format!("10.{x}.{y}.{}", k + 1);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &a]);
            ip(&["-n", &ns, "link", "set", &a, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            hosts.push(ns);
            ips.push(addr);
        }
        Netns {
            hosts,
            bridge_ns,
            ips,
        }
    }

    fn spawn(&self, host: usize, args: &[String]) -> std::process::Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[host],
                env!("CARGO_BIN_EXE_ppml"),
            ])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec runs")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and with it the other end.
        for ns in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    let probe = root
        && has_ip
        && Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !probe {
        let why = format!("root: {root}, ip: {has_ip}");
        assert!(
            std::env::var_os("CI").is_none(),
            "netns test cannot run in CI ({why})"
        );
        eprintln!("SKIPPED: network namespace tests need root and iproute2 ({why})");
    }
    probe
}

/// Keys and a parties file for `names` at `addrs`.
fn deployment(names: &[&str], addrs: &[String]) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ppml-netns-{}-{}", std::process::id(), names.len()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut toml = String::new();
    for (n, a) in names.iter().zip(addrs) {
        ppml_net::keygen(n, &dir.join("keys")).unwrap();
        toml.push_str(&format!(
            "[[party]]\nname = \"{n}\"\naddress = \"{a}\"\ncertificate = \"keys/{n}.crt\"\n\n"
        ));
    }
    std::fs::write(dir.join("parties.toml"), toml).unwrap();
    dir
}

fn args(dir: &std::path::Path, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    v.extend([
        "--parties".into(),
        dir.join("parties.toml").display().to_string(),
        "--keys".into(),
        dir.join("keys").display().to_string(),
        "--json".into(),
    ]);
    v
}

fn done(c: std::process::Child) -> Output {
    c.wait_with_output().unwrap()
}

#[test]
fn inference_across_three_namespaces() {
    if !can_run() {
        return;
    }
    let net = Netns::new("i", 3);
    // Host 0: p0 + model owner, host 1: p1 + data owner, host 2: p2.
    let at = |h: usize, port: u16| format!("{}:{port}", net.ips[h]);
    let addrs = [
        at(0, 7000),
        at(1, 7001),
        at(2, 7002),
        at(0, 7003),
        at(1, 7004),
    ];
    let dir = deployment(&["p0", "p1", "p2", "model-owner", "data-owner"], &addrs);
    let a = net.spawn(
        0,
        &args(
            &dir,
            &["party", "--role", "p0,model-owner", "--arch", "mlp500"],
        ),
    );
    let c = net.spawn(2, &args(&dir, &["party", "--role", "p2"]));
    let b = net.spawn(
        1,
        &args(&dir, &["party", "--role", "p1,data-owner", "--count", "20"]),
    );
    let (a, b, c) = (done(a), done(b), done(c));
    last_json(&a);
    last_json(&c);
    let v = last_json(&b);
    assert_eq!(v["images"], 20);
    assert_eq!(v["insecure"], false);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn split_learning_across_two_namespaces() {
    if !can_run() {
        return;
    }
    let net = Netns::new("s", 2);
    let addrs = [
        format!("{}:7100", net.ips[0]),
        format!("{}:7100", net.ips[1]),
    ];
    let dir = deployment(&["data-holder", "label-holder"], &addrs);
    let common = [
        "--epochs",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--batch",
        "32",
    ];
    let mut label_args = vec!["splitnn", "--role", "label"];
    label_args.extend(common);
    let mut data_args = vec!["splitnn", "--role", "data"];
    data_args.extend(common);
    let l = net.spawn(1, &args(&dir, &label_args));
    let d = net.spawn(0, &args(&dir, &data_args));
    let (l, d) = (done(l), done(d));
    assert_eq!(last_json(&l)["insecure"], false);
    let v = last_json(&d);
    assert_eq!(v["insecure"], false);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn federated_learning_with_secure_aggregation_across_four_namespaces() {
    if !can_run() {
        return;
    }
    let net = Netns::new("f", 4);
    let names = ["server", "client-0", "client-1", "client-2"];
    let addrs: Vec<String> = (0..4).map(|h| format!("{}:7200", net.ips[h])).collect();
    let dir = deployment(&names, &addrs);
    let server = net.spawn(
        0,
        &args(
            &dir,
            &[
                "fl-server",
                "--wait-clients",
                "3",
                "--partition-clients",
                "100",
                "--rounds",
                "2",
                "--secure-aggregation",
                "--no-eval",
            ],
        ),
    );
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let id = i.to_string();
            net.spawn(i + 1, &args(&dir, &["fl-client", "--id", &id]))
        })
        .collect();
    let v = last_json(&done(server));
    assert_eq!(v["secure_aggregation"], true, "{v}");
    assert_eq!(v["transport"], "tls", "{v}");
    assert_eq!(v["joins"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(v["drops"].as_array().is_some_and(Vec::is_empty), "{v}");
    for c in clients {
        let j = last_json(&done(c));
        assert_eq!(j["rounds_completed_secure"], 2, "{j}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
