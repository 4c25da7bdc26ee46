//! `serve --config FILE`: every serve flag as a TOML key, and `serve --print-config`, the
//! effective configuration as a file to start from.
//!
//! The file is not a second configuration system beside the flags: its keys are the flags'
//! long names (`max-body-bytes = "1MiB"`, `model = "pool"`, `defer-accept = true`) and its
//! values go through the very parsers the flags use, by becoming flags placed before the
//! command line's. A flag given on the command line (or through its environment variable)
//! wins over the file, and so does a flag that conflicts with a file key (`--topology` over
//! the file's `model`); within the file, `topology` replaces the keys it conflicts with (a
//! `--print-config` file with a `topology` added keeps working). A key that is no flag, or a
//! value its flag refuses, is an error that names the file and the key — never a flag the
//! user did not type.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        source: toml::de::Error,
    },
    /// A key that is no `serve` flag.
    #[error("{path}: unknown key `{key}` (keys are serve's flags, e.g. `max-body-bytes`)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value of a type no flag takes (a table, an array, a date).
    #[error("{path}: `{key}` must be a string, number or boolean")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value the key's flag refuses (`max-body-bytes = "lots"`).
    #[error("{path}: invalid value {value:?} for `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What the flag's parser said.
        reason: String,
    },
}

/// Flags that are about the run, not the configuration: never keys in a file.
const NOT_KEYS: [&str; 4] = ["config", "print-config", "dry-run", "help"];

/// `argv` with the flags of `serve --config FILE` inserted before the command line's own
/// (those the command line does not already set). Anything else — another subcommand, no
/// `--config`, a command line clap refuses — comes back unchanged, for clap to handle.
pub fn merge(cli: Command, argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let Ok(matches) = cli.clone().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some(("serve", given)) = matches.subcommand() else {
        return Ok(argv);
    };
    let Some(path) = given.get_one::<PathBuf>("config").cloned() else {
        return Ok(argv);
    };
    let Some(serve) = cli.find_subcommand("serve") else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let flags = file_flags(serve, given, &path, &text)?;
    let at = argv
        .iter()
        .position(|a| a == "serve")
        .map_or(argv.len(), |i| i + 1);
    let mut out = argv[..at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&argv[at..]);
    Ok(out)
}

/// The flags the file asks for, leaving out those the command line sets.
fn file_flags(
    serve: &Command,
    given: &ArgMatches,
    path: &Path,
    text: &str,
) -> Result<Vec<OsString>, ConfigFileError> {
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Toml {
        path: path.to_path_buf(),
        source,
    })?;
    let set_here = |id: &str| {
        matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let arg_of = |key: &str| {
        let long = key.replace('_', "-");
        serve
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && !NOT_KEYS.contains(&long.as_str()))
            .ok_or_else(|| ConfigFileError::UnknownKey {
                path: path.to_path_buf(),
                key: key.to_string(),
            })
    };
    // Every key's flag first: an unknown key is refused before anything else, and a key can
    // be checked against the others (`topology` against `model`).
    let in_file: Vec<&clap::Arg> = table.keys().map(|k| arg_of(k)).collect::<Result<_, _>>()?;
    let mut flags = Vec::new();
    for ((key, value), &arg) in table.iter().zip(&in_file) {
        let long = key.replace('_', "-");
        let id = arg.get_id().as_str();
        let overridden = set_here(id)
            || serve
                .get_arguments()
                .any(|other| set_here(other.get_id().as_str()) && conflict(serve, arg, other));
        if overridden {
            continue;
        }
        // The file's `topology` replaces its `model` (and whatever else it rules out).
        let replaced = id != "topology"
            && in_file
                .iter()
                .any(|other| other.get_id() == "topology" && conflict(serve, arg, other));
        if replaced {
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                if *b {
                    flags.push(OsString::from(format!("--{long}")));
                }
                continue;
            }
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigFileError::Value {
                    path: path.to_path_buf(),
                    key: key.clone(),
                })
            }
        };
        // Checked here with the flag's own parser, so that a bad value is reported as the
        // file's, not as a flag typed on the command line.
        if let Err(err) = serve
            .clone()
            .no_binary_name(true)
            .try_get_matches_from([format!("--{long}={text}")])
        {
            return Err(ConfigFileError::Invalid {
                path: path.to_path_buf(),
                key: key.clone(),
                value: text,
                reason: parser_reason(&err),
            });
        }
        flags.push(OsString::from(format!("--{long}={text}")));
    }
    Ok(flags)
}

/// The effective `serve` configuration as TOML: every flag with its value (the command
/// line's, the file's or the default), each under its help line; flags with no value are
/// left as comments. Feeding it back with `--config` gives the same configuration.
pub fn render(serve: &Command, given: &ArgMatches) -> String {
    let mut out =
        String::from("# backlog serve --config FILE (flags given on the command line win)\n");
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if NOT_KEYS.contains(&long) || arg.is_hide_set() {
            continue;
        }
        out.push('\n');
        if let Some(help) = arg.get_help() {
            for line in help.to_string().lines() {
                out.push_str(&format!("# {line}\n"));
            }
        }
        let raw: Vec<String> = given
            .get_raw(arg.get_id().as_str())
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let Some(value) = raw.first() else {
            out.push_str(&format!("# {long} =\n"));
            continue;
        };
        // A default that a given flag rules out (`model` beside a `topology`) stays a
        // comment, so that the file can be read back.
        let defaulted =
            given.value_source(arg.get_id().as_str()) == Some(ValueSource::DefaultValue);
        let ruled_out = defaulted
            && serve.get_arguments().any(|other| {
                let source = given.value_source(other.get_id().as_str());
                source.is_some_and(|s| s != ValueSource::DefaultValue)
                    && conflict(serve, arg, other)
            });
        let comment = if ruled_out { "# " } else { "" };
        out.push_str(&format!("{comment}{long} = {}\n", toml_value(arg, value)));
    }
    out
}

/// What a flag's parser said about a value, without clap's "invalid value … for '--flag'"
/// framing (the file and key are named instead).
fn parser_reason(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(err) {
        return source.to_string();
    }
    match err.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(v)) => format!("expected one of: {}", v.join(", ")),
        _ => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("").trim();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // Past clap's "invalid value 'x' for '--flag <…>': ", if it is there.
            first
                .split_once("': ")
                .map_or(first, |(_, r)| r)
                .to_string()
        }
    }
}

/// Whether `a` and `b` exclude each other (declared on either side: `topology` names
/// `model`).
fn conflict(serve: &Command, a: &clap::Arg, b: &clap::Arg) -> bool {
    let names = |x: &clap::Arg, y: &clap::Arg| {
        serve
            .get_arg_conflicts_with(x)
            .iter()
            .any(|c| c.get_id() == y.get_id())
    };
    names(a, b) || names(b, a)
}

/// A raw flag value as TOML: booleans for switches, integers where the text is one,
/// strings otherwise.
fn toml_value(arg: &clap::Arg, raw: &str) -> toml::Value {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return toml::Value::Boolean(raw == "true");
    }
    match raw.parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, CommandFactory};

    fn cli() -> Command {
        Command::new("t").subcommand(
            Command::new("serve")
                .arg(
                    Arg::new("config")
                        .long("config")
                        .value_parser(clap::value_parser!(PathBuf)),
                )
                .arg(Arg::new("model").long("model").default_value("single"))
                .arg(
                    Arg::new("topology")
                        .long("topology")
                        .conflicts_with("model"),
                )
                .arg(Arg::new("backlog").long("backlog").default_value("4096"))
                .arg(
                    Arg::new("defer-accept")
                        .long("defer-accept")
                        .action(ArgAction::SetTrue),
                )
                .arg(Arg::new("admin").long("admin")),
        )
    }

    fn flags(text: &str, cmdline: &[&str]) -> Result<Vec<String>, ConfigFileError> {
        let cli = cli();
        let argv: Vec<&str> = ["t", "serve", "--config", "f"]
            .iter()
            .chain(cmdline)
            .copied()
            .collect();
        let m = cli.clone().get_matches_from(&argv);
        let given = m.subcommand_matches("serve").unwrap();
        let serve = cli.find_subcommand("serve").unwrap();
        file_flags(serve, given, Path::new("f"), text)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn keys_become_flags_unless_the_command_line_sets_them() {
        let got = flags("model = \"pool\"\nbacklog = 64\ndefer_accept = true\n", &[]).unwrap();
        assert_eq!(got, ["--backlog=64", "--defer-accept", "--model=pool"]);
        let got = flags("model = \"pool\"\nbacklog = 64\n", &["--backlog", "8"]).unwrap();
        assert_eq!(got, ["--model=pool"], "the flag wins");
        let got = flags("model = \"pool\"\n", &["--topology", "readers=2"]).unwrap();
        assert!(got.is_empty(), "a conflicting flag wins too");
    }

    #[test]
    fn unknown_keys_and_odd_values_are_named() {
        let err = flags("modle = \"pool\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("unknown key `modle`"), "{err}");
        let err = flags("config = \"x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("`config`"), "{err}");
        let err = flags("backlog = [1]\n", &[]).unwrap_err();
        assert!(err.to_string().contains("`backlog`"), "{err}");
        assert!(matches!(
            flags("x = ", &[]),
            Err(ConfigFileError::Toml { .. })
        ));
    }

    #[test]
    fn a_files_topology_replaces_its_model_and_bad_values_name_the_key() {
        let got = flags("model = \"pool\"\ntopology = \"readers=2\"\n", &[]).unwrap();
        assert_eq!(got, ["--topology=readers=2"]);
        let err = flags_real("max-body-bytes = \"lots\"\n");
        let text = err.to_string();
        assert!(
            text.contains("f: invalid value \"lots\" for `max-body-bytes`"),
            "{text}"
        );
        assert!(!text.contains("--max-body-bytes"), "{text}");
    }

    /// `file_flags` against the real `serve` command.
    pub(super) fn flags_real(text: &str) -> ConfigFileError {
        let cli = crate::Cli::command();
        let m = cli
            .clone()
            .get_matches_from(["backlog", "serve", "--config", "f"]);
        let given = m.subcommand_matches("serve").unwrap();
        let serve = cli.find_subcommand("serve").unwrap();
        file_flags(serve, given, Path::new("f"), text).unwrap_err()
    }

    #[test]
    fn the_rendered_file_has_every_flag() {
        let cli = cli();
        let m = cli
            .clone()
            .get_matches_from(["t", "serve", "--defer-accept", "--model", "pool"]);
        let text = render(
            cli.find_subcommand("serve").unwrap(),
            m.subcommand_matches("serve").unwrap(),
        );
        assert!(text.contains("\nmodel = \"pool\"\n"), "{text}");
        assert!(text.contains("\nbacklog = 4096\n"), "{text}");
        assert!(text.contains("\ndefer-accept = true\n"), "{text}");
        assert!(text.contains("\n# admin =\n"), "{text}");
        assert!(!text.contains("config ="), "{text}");
        let _ = crate::Cli::command();
    }
}
