//! The host API playbooks call: one module per concern, registered once on
//! the playbook engine. See docs/playbook-api.md.

pub mod backup;
pub mod cluster;
pub mod escalate;
pub mod exec;
pub mod history;
pub mod http;
pub mod log;
pub mod notify;
pub mod redis;
pub mod time;

use std::collections::BTreeMap;

use rhai::{Dynamic, Engine, Map, Scope};

pub fn register(engine: &mut Engine) {
    redis::register(engine);
    log::register(engine);
    notify::register(engine);
    time::register(engine);
    backup::register(engine);
    cluster::register(engine);
    http::register(engine);
    exec::register(engine);
    escalate::register(engine);
    history::register(engine);
}

/// The objects whose methods make up the API: `redis.cmd(...)`, `log.info(...)`.
pub fn push_objects(scope: &mut Scope) {
    scope.push_constant("redis", redis::RedisApi);
    scope.push_constant("log", log::LogApi);
    scope.push_constant("time", time::TimeApi);
    scope.push_constant("backup", backup::BackupApi);
    scope.push_constant("cluster", cluster::ClusterApi);
    scope.push_constant("http", http::HttpApi);
    scope.push_constant("history", history::HistoryApi);
}

pub fn to_dynamic_map(map: &BTreeMap<String, String>) -> Dynamic {
    let m: Map = map.iter().map(|(k, v)| (k.into(), v.clone().into())).collect();
    m.into()
}

pub fn params_to_dynamic(params: &BTreeMap<String, toml::Value>) -> Dynamic {
    let m: Map = params.iter().map(|(k, v)| (k.into(), toml_to_dynamic(v))).collect();
    m.into()
}

fn toml_to_dynamic(v: &toml::Value) -> Dynamic {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_to_dynamic).collect::<Vec<_>>().into(),
        toml::Value::Table(t) => {
            let m: Map = t.iter().map(|(k, v)| (k.into(), toml_to_dynamic(v))).collect();
            m.into()
        }
    }
}
