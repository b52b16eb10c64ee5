//! Embeds build metadata for `/version`: git commit, commit date, rustc version, target.
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let hash = std::env::var("RTCD_BUILD_HASH")
        .ok()
        .or_else(|| output("git", &["rev-parse", "--short=7", "HEAD"]))
        .unwrap_or_default();
    // The commit date keeps builds of one commit reproducible.
    let date = std::env::var("RTCD_BUILD_DATE")
        .ok()
        .or_else(|| {
            output(
                "git",
                &[
                    "log",
                    "-1",
                    "--format=%cd",
                    "--date=format-local:%Y-%m-%d %H:%M",
                ],
            )
        })
        .unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    println!("cargo:rustc-env=RTCD_BUILD_HASH={hash}");
    println!("cargo:rustc-env=RTCD_BUILD_DATE={date}");
    println!("cargo:rustc-env=RTCD_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=RTCD_BUILD_HASH");
    println!("cargo:rerun-if-env-changed=RTCD_BUILD_DATE");
    // Rebuild the metadata when HEAD moves: watch HEAD and the branch ref it points to.
    let mut watched = vec![".git/HEAD".to_owned(), ".git/packed-refs".to_owned()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD")
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        watched.push(format!(".git/{reference}"));
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
