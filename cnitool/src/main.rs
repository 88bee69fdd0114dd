//! `cnitool`: runs a network configuration against a network namespace, as a
//! container runtime would. See `Documentation/cnitool.md`.

mod cache;
mod config;
mod env;
mod runtime;

use std::io::Write;
use std::process::ExitCode;

/// A failure, reported as one line on stderr.
#[derive(Debug)]
pub struct Failure(pub String);

const USAGE: &str = "usage: cnitool add|check|del NETWORK NETNS | gc|status NETWORK [NETNS] | list";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            // One line, whatever a plugin put in its message.
            let line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
            let _ = writeln!(std::io::stderr(), "cnitool: {line}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let settings = env::Settings::from_env()?;
    let verb = args.first().map(String::as_str).unwrap_or_default();
    match (verb, args.len()) {
        ("list", 1) => {
            let mut out = std::io::stdout().lock();
            for net in config::load_all(&settings.netconf_path)? {
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}",
                    net.name,
                    net.types().join(","),
                    net.file.display()
                );
            }
            Ok(())
        }
        ("add" | "check" | "del", 3) => {
            let att = settings.attachment(&args[2], verb != "del")?;
            let rt = settings.runtime();
            let list = match config::find(&settings.netconf_path, &args[1])? {
                Some(list) => list,
                None if verb == "del" => rt
                    .cached_list(&args[1], &att)
                    .ok_or_else(|| config::not_found(&settings.netconf_path, &args[1]))?,
                None => return Err(config::not_found(&settings.netconf_path, &args[1])),
            };
            match verb {
                "add" => {
                    let result = rt.add(&list, &att)?;
                    let text = serde_json::to_string_pretty(&result).expect("JSON serializes");
                    let _ = writeln!(std::io::stdout(), "{text}");
                    Ok(())
                }
                "check" => rt.check(&list, &att),
                _ => rt.del(&list, &att),
            }
        }
        ("gc" | "status", 2 | 3) => {
            let list = config::load(&settings.netconf_path, &args[1])?;
            let rt = settings.runtime();
            if verb == "gc" {
                rt.gc(&list)
            } else {
                rt.status(&list)
            }
        }
        ("-h" | "--help" | "help", _) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
        _ => Err(Failure(USAGE.into())),
    }
}
