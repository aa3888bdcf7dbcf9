//! Leadership among aggregator replicas: a `coordination.k8s.io/v1` Lease, as client-go's leader
//! election keeps it. The holder renews it every retry period; the others take it over once it
//! has not changed for its lease duration, timed on their own monotonic clock from when they
//! last saw it change (so no replica's wall clock matters); conflicting writes lose on the
//! resourceVersion. A leader that cannot renew within the renew deadline steps down on its own,
//! before anyone can take over. Only the leader is ready, serves agents and queries, and acts;
//! on shutdown it releases the Lease so the standby takes over at once.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and how it is kept.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease that stopped changing is honoured.
    pub lease_duration: Duration,
    /// How long the leader may fail to renew before it steps down (shorter than the duration).
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or looked at.
    pub retry_period: Duration,
}

/// This replica's view of who leads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    /// Whether this replica leads.
    pub leader: bool,
    /// The holder, as last read (this replica when it leads).
    pub holder: Option<String>,
}

impl Leadership {
    /// Always the leader: leader election off.
    pub fn sole(identity: &str) -> Self {
        Leadership {
            leader: true,
            holder: Some(identity.to_string()),
        }
    }

    /// Why a request reached the wrong replica.
    pub fn refusal(&self) -> tonic::Status {
        tonic::Status::unavailable(match &self.holder {
            Some(h) => format!("this aggregator replica is the standby; the leader is {h}"),
            None => "this aggregator replica is the standby; no leader yet".to_string(),
        })
    }
}

fn micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// What one round concluded.
enum Round {
    /// This replica holds the Lease (just renewed or acquired).
    Leading,
    /// Another holds it (or the write lost a race).
    Following(Option<String>),
}

/// Keeps the Lease until `stop` turns true, publishing leadership on `tx`.
pub async fn run(
    client: kube::Client,
    cfg: Config,
    tx: watch::Sender<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<(String, Instant)> = None;
    let mut renewed_at: Option<Instant> = None;
    loop {
        let round = round(&api, &cfg, &mut observed).await;
        let now = Instant::now();
        let next = match round {
            Ok(Round::Leading) => {
                renewed_at = Some(now);
                Leadership::sole(&cfg.identity)
            }
            Ok(Round::Following(holder)) => {
                renewed_at = None;
                Leadership {
                    leader: false,
                    holder,
                }
            }
            Err(e) => {
                let current = tx.borrow().clone();
                let lapsed =
                    renewed_at.is_none_or(|at| now.duration_since(at) > cfg.renew_deadline);
                warn!(lease = %cfg.name, error = %e, "cannot read or write the Lease");
                if current.leader && lapsed {
                    warn!(lease = %cfg.name, "could not renew within the renew deadline: stepping down");
                    renewed_at = None;
                    Leadership {
                        leader: false,
                        holder: None,
                    }
                } else {
                    current
                }
            }
        };
        tx.send_if_modified(|l| {
            if *l == next {
                return false;
            }
            match (l.leader, next.leader) {
                (false, true) => {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became the leader")
                }
                (true, false) => {
                    warn!(lease = %cfg.name, holder = ?next.holder, "no longer the leader")
                }
                _ => info!(lease = %cfg.name, holder = ?next.holder, "following"),
            }
            *l = next;
            true
        });
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = stop.changed() => {
                if tx.borrow().leader {
                    release(&api, &cfg).await;
                }
                tx.send_replace(Leadership::default());
                return;
            }
        }
    }
}

async fn round(
    api: &Api<Lease>,
    cfg: &Config,
    observed: &mut Option<(String, Instant)>,
) -> Result<Round, kube::Error> {
    let now = crate::time::now();
    let duration_s = i32::try_from(cfg.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(duration_s),
                acquire_time: Some(micro(now)),
                renew_time: Some(micro(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following(None)),
            Err(e) => Err(e),
        };
    };
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let seen_at = match observed {
        Some((v, at)) if *v == version => *at,
        _ => {
            let at = Instant::now();
            *observed = Some((version, at));
            at
        }
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let honoured = spec
        .lease_duration_seconds
        .map_or(cfg.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
    let mine = holder.as_deref() == Some(cfg.identity.as_str());
    let lapsed = holder.is_none() || seen_at.elapsed() > honoured;
    if !mine && !lapsed {
        return Ok(Round::Following(holder));
    }
    let mut next = lease;
    let spec = next.spec.get_or_insert_with(Default::default);
    spec.renew_time = Some(micro(now));
    spec.lease_duration_seconds = Some(duration_s);
    if !mine {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(micro(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(_) => Ok(Round::Leading),
        // Someone else wrote first: read again next round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following(holder)),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (holder cleared, duration 1 s), as client-go does on a clean shutdown.
async fn release(api: &Api<Lease>, cfg: &Config) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(micro(crate::time::now()));
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "Lease released"),
        Err(e) => warn!(lease = %cfg.name, error = %e, "cannot release the Lease"),
    }
}
