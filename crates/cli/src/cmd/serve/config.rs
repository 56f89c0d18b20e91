//! `shoal serve` configuration: one TOML document, one section per role, every key with a
//! default. Sources, later ones winning: built-in defaults, the file (`--config`), environment
//! variables (`SHOAL_<SECTION>_<KEY>`, e.g. `SHOAL_AUTH_KEYS`, `SHOAL_API_RATE_LIMIT_BURST`),
//! then flags (`--listen`, `--roles`, ..., and `--set section.key=value` for any key).
//!
//! `shoal serve --print-config` prints the defaults as commented TOML
//! (`config/shoal.example.toml` is that output).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use shoal_api::{ApiConfig, AuthConfig, TicketsConfig};
use shoal_stun::StunConfig;
use shoal_tracker::TrackerConfig;

/// A server role `shoal serve` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Api,
    Tracker,
    Stun,
    /// Client reports, windows, queries, the dashboard, holdback and protection
    /// (`shoal-pingback`, `docs/pingback.md`).
    Pingback,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Api, Role::Tracker, Role::Stun, Role::Pingback];

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Tracker => "tracker",
            Role::Stun => "stun",
            Role::Pingback => "pingback",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s.trim())
            .with_context(|| format!("unknown role {s:?} (roles: api, tracker, stun, pingback)"))
    }
}

/// `[serve]`: which roles run and where they listen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSection {
    pub roles: Vec<Role>,
    /// The shared HTTP listener of the api, tracker and pingback roles.
    pub listen: String,
    /// Public base URL of the shared listener as clients reach it (`https://shoal.example.com`),
    /// used to derive the tracker, STUN and pingback URLs handed out by the API. Empty: the
    /// bound address, or the host the client used when bound to 0.0.0.0 / [::].
    pub public_url: String,
    /// Separate listeners per role (empty: the shared listener).
    pub api_listen: String,
    pub tracker_listen: String,
    pub pingback_listen: String,
}

impl Default for ServeSection {
    fn default() -> Self {
        ServeSection {
            roles: Role::ALL.to_vec(),
            listen: "0.0.0.0:8080".into(),
            public_url: String::new(),
            api_listen: String::new(),
            tracker_listen: String::new(),
            pingback_listen: String::new(),
        }
    }
}

/// `[pingback]`: the pingback role's configuration (owned by `shoal-pingback`).
pub use shoal_pingback::PingbackConfig;

/// `[cluster]`: several nodes sharing state through Redis (owned by `shoal-cluster`).
pub use shoal_cluster::ClusterConfig;

/// The whole `shoal serve` configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub serve: ServeSection,
    pub auth: AuthConfig,
    pub tickets: TicketsConfig,
    pub api: ApiConfig,
    pub tracker: TrackerConfig,
    pub stun: StunConfig,
    pub pingback: PingbackConfig,
    pub cluster: ClusterConfig,
}

/// Sections whose keys may be set from `SHOAL_<SECTION>_...` variables.
const SECTIONS: [&str; 8] = ["serve", "auth", "tickets", "api", "tracker", "stun", "pingback", "cluster"];

/// Documented defaults of the sections this module owns, in the order printed. Checked against
/// `ServeConfig::default()` by a test, so it cannot drift.
const OWN_SECTIONS: &str = include_str!("defaults.toml");

/// The full default configuration as commented TOML (`--print-config`).
pub fn default_toml() -> String {
    let tracker = toml::to_string(&TrackerOnly { tracker: TrackerConfig::default() })
        .expect("the tracker's defaults serialize to TOML");
    format!(
        "{OWN_SECTIONS}\n\
         # ---------------------------------------------------------------------------------------\n\
         # [tracker]: the tracker role (crates/tracker, TrackerConfig; each key is documented in\n\
         # crates/tracker/src/config.rs and docs/tracker-protocol.md). Env: SHOAL_TRACKER_<KEY>,\n\
         # nested keys joined with `_` (SHOAL_TRACKER_WEBTORRENT_ENABLED=false).\n\
         # ---------------------------------------------------------------------------------------\n\
         {tracker}"
    )
}

#[derive(Serialize)]
struct TrackerOnly {
    tracker: TrackerConfig,
}

/// Where the configuration comes from.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    /// `(name, value)` pairs, normally `std::env::vars()`.
    pub env: Vec<(String, String)>,
    /// `section.key=value` overrides (flags), applied last in order.
    pub set: Vec<String>,
}

/// Merge defaults, file, environment and flags into one checked configuration.
pub fn load(src: &Sources<'_>) -> anyhow::Result<ServeConfig> {
    let defaults = toml::Value::try_from(ServeConfig::default()).expect("defaults serialize");
    let mut doc = defaults.clone();
    if let Some(path) = src.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        merge(&mut doc, file);
    }
    let leaves = leaf_paths(&defaults);
    let by_env: BTreeMap<String, &Vec<String>> = leaves.iter().map(|(p, _)| (env_name(p), p)).collect();
    for (name, value) in &src.env {
        let Some(rest) = name.strip_prefix("SHOAL_") else { continue };
        if !SECTIONS.iter().any(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase()))) {
            continue;
        }
        let path = by_env.get(name.as_str()).with_context(|| {
            format!("unknown configuration variable {name} (see `shoal serve --print-config`)")
        })?;
        set_path(&mut doc, &defaults, path, value).with_context(|| format!("environment variable {name}"))?;
    }
    for s in &src.set {
        let (key, value) =
            s.split_once('=').with_context(|| format!("--set {s:?}: expected section.key=value"))?;
        let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
        // Free-form tables (engine overrides) take any key below them.
        let free_form = path.len() > 2 && path[..2] == ["api", "engine"];
        if !free_form && !leaves.iter().any(|(p, _)| *p == path) {
            bail!("--set {key}: unknown configuration key");
        }
        set_path(&mut doc, &defaults, &path, value).with_context(|| format!("--set {key}"))?;
    }
    let cfg: ServeConfig = doc.try_into().context("configuration")?;
    check(&cfg)?;
    Ok(cfg)
}

/// Cross-section checks that serde cannot express.
fn check(cfg: &ServeConfig) -> anyhow::Result<()> {
    let roles = &cfg.serve.roles;
    if roles.is_empty() {
        bail!("serve.roles is empty: nothing to run");
    }
    for (i, r) in roles.iter().enumerate() {
        if roles[..i].contains(r) {
            bail!("serve.roles lists {} twice", r.name());
        }
    }
    if roles.contains(&Role::Tracker) {
        cfg.tracker.validate().map_err(anyhow::Error::msg)?;
    }
    if roles.contains(&Role::Pingback) {
        cfg.pingback.validate().map_err(anyhow::Error::msg)?;
    }
    cfg.cluster.validate().map_err(anyhow::Error::msg)?;
    if cfg.cluster.enabled() && cfg.tickets.keys.is_empty() {
        bail!(
            "cluster.redis is set but tickets.keys is empty: every node of a cluster must share the \
             ticket secret (SHOAL_TICKETS_KEYS=kid:secret), or a ticket from one node's API fails at \
             another node's tracker"
        );
    }
    Ok(())
}

/// Every non-table value of `v` with its path (arrays are leaves).
pub fn leaf_paths(v: &toml::Value) -> Vec<(Vec<String>, toml::Value)> {
    fn walk(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, toml::Value)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, child) in t {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            other => out.push((path.clone(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// `["api", "rate_limit", "burst"]` → `SHOAL_API_RATE_LIMIT_BURST`.
pub fn env_name(path: &[String]) -> String {
    format!("SHOAL_{}", path.join("_").to_ascii_uppercase())
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn get_path<'a>(v: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// Set `path` in `doc` from the text `raw`, typed like the default at that path (a table key
/// without a default, such as `api.engine.x`, takes a TOML literal or a string).
fn set_path(doc: &mut toml::Value, defaults: &toml::Value, path: &[String], raw: &str) -> anyhow::Result<()> {
    let value = parse_like(get_path(defaults, path), raw)?;
    let (last, parents) = path.split_last().context("empty key")?;
    let mut cur = doc;
    for k in parents {
        let t = cur.as_table_mut().context("not a table")?;
        cur = t.entry(k.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    cur.as_table_mut().context("not a table")?.insert(last.clone(), value);
    Ok(())
}

fn parse_literal(raw: &str) -> anyhow::Result<toml::Value> {
    let t: toml::Table =
        toml::from_str(&format!("v = {raw}")).with_context(|| format!("not a TOML value: {raw}"))?;
    t.get("v").cloned().context("no value")
}

fn parse_like(default: Option<&toml::Value>, raw: &str) -> anyhow::Result<toml::Value> {
    let raw_t = raw.trim();
    Ok(match default {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(toml::Value::Integer(_)) => toml::Value::Integer(raw_t.parse().context("expected an integer")?),
        Some(toml::Value::Float(_)) => toml::Value::Float(raw_t.parse().context("expected a number")?),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match raw_t {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => bail!("expected true or false"),
        }),
        Some(toml::Value::Array(items)) => {
            if raw_t.starts_with('[') {
                parse_literal(raw_t)?
            } else {
                let elem = items.first();
                toml::Value::Array(
                    raw_t
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| match elem {
                            Some(e) if !e.is_str() => parse_like(Some(e), s),
                            _ => Ok(toml::Value::String(s.to_owned())),
                        })
                        .collect::<anyhow::Result<_>>()?,
                )
            }
        }
        _ => parse_literal(raw_t).unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(file_text: Option<&str>, env: &[(&str, &str)], set: &[&str]) -> anyhow::Result<ServeConfig> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("shoal-serve-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("shoal.toml");
        if let Some(t) = file_text {
            std::fs::write(&path, t)?;
        }
        let r = load(&Sources {
            file: file_text.map(|_| path.as_path()),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            set: set.iter().map(|s| s.to_string()).collect(),
        });
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn printed_defaults_are_the_defaults() {
        let text = default_toml();
        let parsed: ServeConfig = toml::from_str(&text).expect("--print-config output parses");
        assert_eq!(parsed, ServeConfig::default(), "defaults.toml drifted from the code");
        // Every key of the sections documented by hand has a comment line naming its env var.
        let defaults = toml::Value::try_from(ServeConfig::default()).expect("serialize");
        for (path, _) in leaf_paths(&defaults) {
            if path[0] == "tracker" || path[0] == "api" && path.get(1).is_some_and(|k| k == "engine") {
                continue;
            }
            assert!(
                text.contains(&env_name(&path)),
                "{} is not documented in defaults.toml",
                env_name(&path)
            );
        }
    }

    #[test]
    fn example_file_is_the_printed_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/shoal.example.toml");
        let text = std::fs::read_to_string(path).expect("config/shoal.example.toml exists");
        assert_eq!(
            text,
            default_toml(),
            "regenerate with `shoal serve --print-config > config/shoal.example.toml`"
        );
    }

    #[test]
    fn env_names_are_unique() {
        let defaults = toml::Value::try_from(ServeConfig::default()).expect("serialize");
        let paths = leaf_paths(&defaults);
        let names: std::collections::BTreeSet<String> = paths.iter().map(|(p, _)| env_name(p)).collect();
        assert_eq!(names.len(), paths.len());
    }

    #[test]
    fn precedence_file_env_flags() {
        let file = "[serve]\nlisten = \"127.0.0.1:1000\"\npublic_url = \"https://file.test\"\n\
                    [api]\ntracker_count = 2\n[api.engine]\nmax_peers = 5\n";
        let cfg = load_with(Some(file), &[], &[]).expect("load");
        assert_eq!(cfg.serve.listen, "127.0.0.1:1000");
        assert_eq!(cfg.api.tracker_count, 2);
        assert_eq!(cfg.api.engine.get("max_peers"), Some(&serde_json::json!(5)));
        assert_eq!(cfg.stun, StunConfig::default(), "untouched sections keep defaults");
        let env = [
            ("SHOAL_SERVE_LISTEN", "127.0.0.1:2000"),
            ("SHOAL_AUTH_KEYS", "k1:aaaaaaaaaaaaaaaaaaaa, k2:bbbbbbbbbbbbbbbbbbbb"),
            ("SHOAL_API_RATE_LIMIT_PER_SECOND", "2.5"),
            ("SHOAL_AUTH_REQUIRE_TOKEN", "false"),
            ("SHOAL_TRACKER_WEBTORRENT_ENABLED", "false"),
            ("SHOAL_SERVE_ROLES", "api,stun"),
            ("SHOAL_LOG_FORMAT", "json"),
            ("PATH", "/bin"),
        ];
        let cfg = load_with(Some(file), &env, &[]).expect("load");
        assert_eq!(cfg.serve.listen, "127.0.0.1:2000", "env beats file");
        assert_eq!(cfg.serve.public_url, "https://file.test");
        assert_eq!(cfg.auth.keys, vec!["k1:aaaaaaaaaaaaaaaaaaaa", "k2:bbbbbbbbbbbbbbbbbbbb"]);
        assert_eq!(cfg.api.rate_limit.per_second, 2.5);
        assert!(!cfg.auth.require_token);
        assert!(!cfg.tracker.webtorrent.enabled);
        assert_eq!(cfg.serve.roles, vec![Role::Api, Role::Stun]);
        let cfg = load_with(Some(file), &env, &["serve.listen=127.0.0.1:3000", "api.engine.extra={ a = 1 }"])
            .expect("load");
        assert_eq!(cfg.serve.listen, "127.0.0.1:3000", "flags beat env");
        assert_eq!(cfg.api.engine.get("extra"), Some(&serde_json::json!({"a": 1})));
        assert_eq!(cfg.api.engine.get("max_peers"), Some(&serde_json::json!(5)), "tables merge");
    }

    #[test]
    fn mistakes_are_errors() {
        let e = load_with(None, &[("SHOAL_AUTH_KEY", "x")], &[]).expect_err("typo in env");
        assert!(e.to_string().contains("SHOAL_AUTH_KEY"), "{e}");
        let e = load_with(Some("[api]\nno_such = 1\n"), &[], &[]).expect_err("unknown key in file");
        assert!(format!("{e:#}").contains("no_such"), "{e:#}");
        assert!(load_with(None, &[("SHOAL_API_TRACKER_COUNT", "many")], &[]).is_err());
        assert!(load_with(None, &[], &["api.nope=1"]).is_err());
        assert!(load_with(None, &[], &["serve.roles=api,api"]).is_err());
        assert!(load_with(None, &[], &["serve.roles=api,cdn"]).is_err());
        assert!(load_with(None, &[], &["serve.roles=[]"]).is_err());
        assert!(load_with(None, &[], &["tracker.rate_per_sec=0"]).is_err(), "tracker's own validation");
    }
}
