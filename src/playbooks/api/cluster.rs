//! `cluster.*`: the run's cluster as its nodes report it. `nodes()`,
//! `shards()`, `masters()` and `info()` ask the cluster each time (a
//! playbook checking a failover wants the topology of now); `shard_of(key)`
//! reads the map the run last fetched, since it is asked per key.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::cluster::{ClusterView, NodeView, ShardView, key_slot};
use crate::playbooks::context::{self, RunState};

#[derive(Debug, Clone, Copy)]
pub struct ClusterApi;

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ClusterApi>("Cluster");
    engine.register_fn("nodes", |_: &mut ClusterApi| {
        fresh(true, |v| {
            v.nodes.iter().map(|n| node_map(v, n)).collect::<Array>().into()
        })
    });
    engine.register_fn("masters", |_: &mut ClusterApi| {
        fresh(true, |v| {
            v.nodes
                .iter()
                .filter(|n| v.masters().contains(&n.addr.as_str()))
                .map(|n| node_map(v, n))
                .collect::<Array>()
                .into()
        })
    });
    engine.register_fn("shards", |_: &mut ClusterApi| {
        fresh(true, |v| v.shards.iter().map(shard_map).collect::<Array>().into())
    });
    engine.register_fn("info", |_: &mut ClusterApi| fresh(true, info_map));
    engine.register_fn("shard_of", |_: &mut ClusterApi, key: &str| {
        let slot = key_slot(key.as_bytes());
        fresh(false, |v| match v.shard_of_slot(slot) {
            Some(shard) => {
                let mut m = shard_map(shard).cast::<Map>();
                m.insert("slot".into(), i64::from(slot).into());
                m.into()
            }
            None => Dynamic::UNIT,
        })
    });
}

/// The view, asked of the cluster again when `refresh`, else the run's last.
fn fresh(refresh: bool, f: impl FnOnce(&ClusterView) -> Dynamic) -> RhaiResult {
    context::with_run(|run: &mut RunState| {
        let timeout = run.ctx.command_timeout.min(run.remaining());
        let target = run.ctx.target.clone();
        let Some(route) = run.cluster.as_mut() else {
            return Err(format!("cluster: target `{target}` is not a cluster").into());
        };
        let view = if refresh {
            route.refresh(timeout)
        } else {
            route.view(timeout)
        };
        view.map(f)
            .map_err(|e| format!("cluster: {}", crate::secrets::redact(&e)).into())
    })?
}

fn ranges(slots: &[(u16, u16)]) -> String {
    slots
        .iter()
        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect::<Vec<_>>()
        .join(",")
}

fn node_map(view: &ClusterView, n: &NodeView) -> Dynamic {
    let mut m = Map::new();
    m.insert("addr".into(), n.addr.clone().into());
    m.insert("id".into(), n.id.clone().into());
    m.insert("role".into(), n.role.as_str().into());
    m.insert(
        "shard".into(),
        view.shard_of_node(&n.addr)
            .map(|s| s.name.clone())
            .unwrap_or_default()
            .into(),
    );
    // A replica serves its shard's slots through its master.
    let slots = match view.shard_of_node(&n.addr) {
        Some(s) => ranges(&s.slots),
        None => ranges(&n.slots),
    };
    m.insert("slots".into(), slots.into());
    m.insert("up".into(), n.is_up().into());
    m.insert(
        "flags".into(),
        n.flags.iter().cloned().map(Dynamic::from).collect::<Array>().into(),
    );
    m.into()
}

fn shard_map(s: &ShardView) -> Dynamic {
    let mut m = Map::new();
    m.insert("shard".into(), s.name.clone().into());
    m.insert("slots".into(), ranges(&s.slots).into());
    m.insert("master".into(), s.master.clone().map_or(Dynamic::UNIT, Dynamic::from));
    m.insert(
        "replicas".into(),
        s.replicas.iter().cloned().map(Dynamic::from).collect::<Array>().into(),
    );
    m.into()
}

fn info_map(v: &ClusterView) -> Dynamic {
    let i = &v.info;
    let n = |x: u64| Dynamic::from(x as i64);
    let mut m = Map::new();
    m.insert("state_ok".into(), i.state_ok.into());
    m.insert("slots_assigned".into(), n(i.slots_assigned));
    m.insert("slots_ok".into(), n(i.slots_ok));
    m.insert("slots_pfail".into(), n(i.slots_pfail));
    m.insert("slots_fail".into(), n(i.slots_fail));
    m.insert("known_nodes".into(), n(i.known_nodes));
    m.insert("size".into(), n(i.size));
    m.insert("current_epoch".into(), n(i.current_epoch));
    m.insert("uncovered_slots".into(), n(v.uncovered_slots()));
    m.into()
}
