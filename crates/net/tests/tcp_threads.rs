//! Dropping TCP channels ends their reader threads (one test per binary, so the thread
//! count of this process is not disturbed by other tests).

mod common;

use ppml_net::NetConfig;

#[cfg(target_os = "linux")]
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_channels_ends_reader_threads() {
    let before = thread_count();
    let mut pairs: Vec<_> = (0..8)
        .map(|_| common::tcp_pair(&NetConfig::default()))
        .collect();
    for (a, b) in &mut pairs {
        a.send(&1u32).unwrap();
        assert_eq!(b.recv::<u32>().unwrap(), 1);
    }
    assert!(
        thread_count() >= before + 16,
        "one reader thread per channel expected"
    );
    // Drop one side only of half the pairs, then everything.
    for (a, _) in pairs.iter_mut().take(4) {
        drop(std::mem::replace(
            a,
            common::mem_pair(&NetConfig::default()).0,
        ));
    }
    drop(pairs);
    // Drop joins the reader threads. A joined thread can still be listed in
    // /proc for a moment (join wakes on the thread's tid being cleared, before
    // the kernel reaps the task), so allow a short grace period; a leaked
    // reader thread would stay listed for the whole channel timeout (60 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while thread_count() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(thread_count(), before);
}
