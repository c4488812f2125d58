//! An instance's environment and argv: what it inherits from ebb, what ebb adds, and `${VAR}`
//! expansion. Pure functions, so the rules are tested without starting anything.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// An instance's environment, sorted so that it is the same on every start.
pub type Env = BTreeMap<OsString, OsString>;

/// Prefix of ebb's own variables (`EBB_TOKEN`, `EBB_ADDR`, ...): never passed down, so an instance
/// can never read the API token.
const EBB_PREFIX: &[u8] = b"EBB_";

/// `argv[0]` that means "this ebb binary", so examples run without ebb on `PATH`.
const SELF_PROGRAM: &str = "ebb";

/// The part of ebb's environment that instances inherit: everything but `EBB_*`.
pub fn inherited(vars: impl Iterator<Item = (OsString, OsString)>) -> Env {
    vars.filter(|(k, _)| !k.as_encoded_bytes().starts_with(EBB_PREFIX))
        .collect()
}

/// Puts the folder of ebb's own binary last on `PATH`, so that `ebb` also works inside an
/// instance's scripts (`sh -c "... exec ebb example-app"`) when ebb is not installed. Last, so
/// that nothing else in that folder (a build folder, say) shadows the system's commands.
pub fn with_self_on_path(mut env: Env, self_exe: &Path) -> Env {
    let Some(dir) = self_exe.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return env;
    };
    let mut path = OsString::new();
    if let Some(old) = env.get(OsStr::new("PATH")).filter(|p| !p.is_empty()) {
        path.push(old);
        path.push(":");
    }
    path.push(dir.as_os_str());
    env.insert("PATH".into(), path);
    env
}

/// Set on every instance (and health command) to the id of the agent that started it, so that a
/// restarted agent finds the processes its predecessor started but never recorded (`sweep.rs`).
pub const AGENT_ID_VAR: &str = "EBB_AGENT_ID";
/// Set on every instance to its id; the sweep reads it to tell whose a marked process is.
pub const INSTANCE_ID_VAR: &str = "EBB_INSTANCE_ID";

/// Who an instance is and where it listens: the variables ebb sets for it.
pub struct Identity<'a> {
    /// The agent's id (`sweep::agent_id`), given as [`AGENT_ID_VAR`].
    pub agent: &'a str,
    pub instance: &'a str,
    pub service: &'a str,
    pub node: &'a str,
    pub host: &'a str,
    pub port: u16,
}

/// The full environment of an instance: inherited, then the spec's, then ebb's (which win).
pub fn instance_env(inherited: &Env, spec_env: &BTreeMap<String, String>, who: &Identity) -> Env {
    let mut env = inherited.clone();
    env.extend(spec_env.iter().map(|(k, v)| (k.into(), v.into())));
    let ours = [
        ("PORT", who.port.to_string()),
        ("HOST", who.host.to_string()),
        (INSTANCE_ID_VAR, who.instance.to_string()),
        ("EBB_SERVICE", who.service.to_string()),
        ("EBB_NODE", who.node.to_string()),
        (AGENT_ID_VAR, who.agent.to_string()),
    ];
    env.extend(ours.into_iter().map(|(k, v)| (k.into(), v.into())));
    env
}

/// Replaces each `${NAME}` with its value from `env` (unknown names become empty). A `$` that does
/// not start a well-formed `${NAME}` is kept as written.
pub fn expand(text: &str, env: &Env) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if let Some(value) = env.get(OsStr::new(name)) {
                    out.push_str(&value.to_string_lossy());
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expands argv and maps `ebb` to this binary. Returns the program and its arguments.
pub fn resolve_argv(
    argv: &[String],
    env: &Env,
    self_exe: &Path,
) -> Result<(OsString, Vec<String>), String> {
    let (first, args) = argv
        .split_first()
        .ok_or_else(|| "the command is empty".to_string())?;
    let program = if first == SELF_PROGRAM {
        self_exe.as_os_str().to_owned()
    } else {
        OsString::from(expand(first, env))
    };
    if program.is_empty() {
        return Err(format!("the program {first:?} expands to an empty string"));
    }
    Ok((program, args.iter().map(|a| expand(a, env)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn ebbs_folder_comes_last_on_path() {
        let e = with_self_on_path(env(&[("PATH", "/bin")]), Path::new("/opt/ebb/bin/ebb"));
        assert_eq!(e[OsStr::new("PATH")], "/bin:/opt/ebb/bin");
        let e = with_self_on_path(Env::new(), Path::new("/opt/ebb/bin/ebb"));
        assert_eq!(e[OsStr::new("PATH")], "/opt/ebb/bin");
    }

    #[test]
    fn ebb_variables_are_not_inherited() {
        let vars = env(&[
            ("PATH", "/bin"),
            ("EBB_TOKEN", "secret"),
            ("EBB_ADDR", "x"),
            ("EBBX", "1"),
        ]);
        let kept = inherited(vars.into_iter());
        assert_eq!(kept, env(&[("EBBX", "1"), ("PATH", "/bin")]));
    }

    #[test]
    fn ebb_sets_port_host_and_ids_over_the_spec() {
        let spec: BTreeMap<String, String> = [
            ("GREETING".into(), "hi".into()),
            ("PATH".into(), "/opt".into()),
            ("EBB_AGENT_ID".into(), "forged".into()),
        ]
        .into();
        let who = Identity {
            agent: "0123456789abcdef",
            instance: "web-1",
            service: "web",
            node: "n1",
            host: "127.0.0.1",
            port: 8080,
        };
        let e = instance_env(&env(&[("PATH", "/bin"), ("HOME", "/root")]), &spec, &who);
        assert_eq!(e[OsStr::new("PATH")], "/opt");
        assert_eq!(e[OsStr::new("HOME")], "/root");
        assert_eq!(e[OsStr::new("PORT")], "8080");
        assert_eq!(e[OsStr::new("HOST")], "127.0.0.1");
        assert_eq!(e[OsStr::new("EBB_INSTANCE_ID")], "web-1");
        assert_eq!(e[OsStr::new("EBB_SERVICE")], "web");
        assert_eq!(e[OsStr::new("EBB_NODE")], "n1");
        assert_eq!(e[OsStr::new("EBB_AGENT_ID")], "0123456789abcdef");
    }

    #[test]
    fn expand_replaces_known_names_and_empties_unknown_ones() {
        let e = env(&[("PORT", "80"), ("HOST", "::1")]);
        assert_eq!(expand("--bind=${HOST}:${PORT}", &e), "--bind=::1:80");
        assert_eq!(expand("a${NOPE}b", &e), "ab");
        assert_eq!(expand("${PORT}${PORT}", &e), "8080");
    }

    #[test]
    fn expand_keeps_text_that_is_not_a_reference() {
        let e = env(&[("PORT", "80")]);
        assert_eq!(expand("$PORT costs $5", &e), "$PORT costs $5");
        assert_eq!(expand("open ${PORT", &e), "open ${PORT");
        assert_eq!(expand("ünïcode ${PORT} ✓", &e), "ünïcode 80 ✓");
    }

    #[test]
    fn argv_zero_ebb_means_this_binary() {
        let e = env(&[("PORT", "80")]);
        let argv = vec!["ebb".to_string(), "serve".into(), "${PORT}".into()];
        let (program, args) = resolve_argv(&argv, &e, Path::new("/usr/bin/ebb-self")).unwrap();
        assert_eq!(program, "/usr/bin/ebb-self");
        assert_eq!(args, ["serve", "80"]);
        assert!(resolve_argv(&[], &e, Path::new("/x")).is_err());
        assert!(resolve_argv(&["${NOPE}".into()], &e, Path::new("/x")).is_err());
    }
}
