//! What the cluster needs, node by node, before any step is drawn: who is primary now, whether
//! the plan promotes someone and why (planned switchover, finishing one, failover), and the fate
//! of every other node (keep, start, re-point, clone, rejoin by follow / rewind / clone, retire,
//! wait because unreachable). All safety refusals of SPEC §4 are decided here, so the transforms
//! only draw steps.

use std::collections::BTreeMap;

use crate::config::{Desired, DesiredRole};
use crate::diff::assess::{self, Verdict};
use crate::diff::{
    actionable, needs_data, observed, observed_role, observed_upstream, received, wal_end,
};
use crate::observe::{ObservedCluster, ObservedNode, Role};
use crate::units::{replayed_past_checkpoint, ByteSize, Lsn};

use super::candidate::{self, reachable_standbys};
use super::error::PlanError;
use super::PlanOptions;

/// Why the plan promotes a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromotionKind {
    /// The old primary is healthy: stop it, wait for its shutdown checkpoint, promote.
    Switchover,
    /// The old primary was shut down cleanly and the candidate has replayed that checkpoint.
    FinishSwitchover { checkpoint: Lsn },
    /// The old primary is down and not proven clean: consent given.
    Failover {
        /// Bytes the candidate lacks behind the old primary's last known location.
        exposure: Option<u64>,
        /// The old primary's host answers: fence it before promoting.
        fence: bool,
        last_known: Option<Lsn>,
    },
}

/// The promotion of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub candidate: String,
    /// The primary being replaced (None when nothing claims to be primary).
    pub old: Option<String>,
    pub kind: PromotionKind,
    /// Bytes the candidate had still to replay when observed: behind the old primary's end of
    /// WAL (switchover), or behind what it received (failover).
    pub replay_lag: u64,
    /// The recovery conflict its replay waited on when observed (its blockers are cancelled
    /// before the promotion).
    pub conflict: Option<crate::observe::ReplayConflict>,
}

impl Promotion {
    /// Why the candidate is promoted: the one wording of the promotion, which the promote step
    /// says and the change list's reason ([`Promotion::change_reason`]) repeats.
    pub fn why(&self) -> String {
        let old = self.old.as_deref().unwrap_or_default();
        match &self.kind {
            PromotionKind::Switchover => format!("planned switchover from {old}"),
            PromotionKind::FinishSwitchover { checkpoint } => {
                format!("finishing the switchover from {old} (shut down cleanly at {checkpoint})")
            }
            PromotionKind::Failover { .. } if old.is_empty() => "failover: no primary".into(),
            PromotionKind::Failover { .. } => format!("failover from {old}, which is down"),
        }
    }

    /// The candidate's reason in the change list: [`Promotion::why`], with what a failover may
    /// lose.
    pub fn change_reason(&self) -> String {
        let loss = match &self.kind {
            PromotionKind::Failover { exposure, .. } => match exposure {
                Some(0) => "; it has received all WAL known to be written".to_string(),
                Some(b) => format!("; up to {} of WAL may be lost", ByteSize::human(*b)),
                None => "; an unknown amount of WAL may be lost".to_string(),
            },
            _ => String::new(),
        };
        format!("will be promoted ({}{loss})", self.why())
    }
}

/// How a node whose history diverged (or was primary) joins its new upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejoin {
    Follow { reason: String },
    Rewind { reason: String },
    Clone { reason: String },
}

/// What happens to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Nothing about its replication changes.
    Keep,
    /// The declared primary, stopped: start it.
    StartPrimary,
    /// The node promoted by this plan.
    Promote,
    /// A stopped standby already configured for its upstream.
    Start,
    /// A standby configured for another upstream (or slot).
    Repoint,
    /// No data directory (or another cluster's): clone.
    New { move_aside: bool, reason: String },
    /// Was primary, or has a history its upstream does not share.
    Rejoin(Rejoin),
    /// Unreachable: nothing can be done now.
    Deferred { why: String },
    /// `state: absent`.
    Retire,
}

impl Fate {
    /// The node's data directory is rewritten from its upstream (pg_basebackup or pg_rewind):
    /// what it holds now (its pg_hba.conf block, its slots, its replication state) is not what
    /// it will hold. The one place that says which fates do.
    pub fn replaces_data(&self) -> bool {
        self.copies_data() || matches!(self, Fate::Rejoin(Rejoin::Rewind { .. }))
    }

    /// The node gets a fresh copy of its upstream (pg_basebackup): the source's configuration,
    /// no slot of its own.
    pub fn copies_data(&self) -> bool {
        matches!(self, Fate::New { .. } | Fate::Rejoin(Rejoin::Clone { .. }))
    }
}

/// Whether the plan writes the managed block of `obs`'s pg_hba.conf: [`crate::diff::hba::needs_write`],
/// unless the node is deferred or gets a fresh copy of its upstream (whose block it copies). A
/// rewound node keeps its own configuration, so its block is written. The one judge behind the
/// `write_hba` step and the file diff the plan shows.
pub fn hba_needs_write(d: &Desired, obs: &ObservedNode, fate: &Fate) -> bool {
    !matches!(fate, Fate::Deferred { .. })
        && !fate.copies_data()
        && crate::diff::hba::needs_write(&crate::diff::hba::managed_block(d), obs)
}

/// The outcome of the analysis.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The topology as the plan realises it (the declared one, unless the declared primary is
    /// unreachable and another node takes its place).
    pub eff: Desired,
    pub promotion: Option<Promotion>,
    pub fates: BTreeMap<String, Fate>,
    pub notes: Vec<String>,
}

/// Make `name` the primary of `d`: the old declared primary and its direct standbys follow it.
pub fn reroot(d: &Desired, name: &str) -> Desired {
    let mut e = d.clone();
    let old = d.primary().name.clone();
    if old == name {
        return e;
    }
    for n in e.nodes.values_mut() {
        if n.name == name {
            n.role = DesiredRole::Primary;
        } else if n.name == old
            || matches!(&n.role, DesiredRole::Standby { upstream } if *upstream == old)
        {
            n.role = DesiredRole::Standby {
                upstream: name.into(),
            };
        }
    }
    e
}

fn running_primaries(o: &ObservedCluster) -> Vec<String> {
    o.nodes
        .iter()
        .filter(|(_, n)| n.running && n.role == Some(Role::Primary))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The most advanced reachable, running standby by received WAL (name order on ties).
pub fn most_advanced_standby(
    d: &Desired,
    o: &ObservedCluster,
    except: &[&str],
) -> Option<(String, Lsn)> {
    let mut best: Option<(String, Lsn)> = None;
    for k in reachable_standbys(d, o, except) {
        let l = o.nodes.get(&k).and_then(received).unwrap_or_default();
        if best.as_ref().map_or(true, |(_, b)| l > *b) {
            best = Some((k, l));
        }
    }
    best
}

fn why_down(o: &ObservedNode) -> String {
    o.unreachable_reason
        .clone()
        .unwrap_or_else(|| "no answer".into())
}

fn can_rewind(o: &ObservedNode) -> bool {
    let on = |k: &str| {
        o.settings
            .get(k)
            .is_some_and(|s| crate::diff::values::setting_matches("on", s))
    };
    on("wal_log_hints")
        || on("data_checksums")
        || o.control
            .as_ref()
            .is_some_and(|c| c.wal_log_hints || c.data_checksums)
}

/// The node's end of WAL when it is known: a position seen over SQL (now, or kept from the last
/// observation of an `--assume-down` node), or the control data of a cleanly shut down server.
/// None for a server that stopped without a clean shutdown (crashed, killed) and is seen only
/// through its files: its WAL goes on past its last checkpoint by an amount the control data
/// cannot tell ([`wal_end`] is then only a lower bound).
pub fn known_wal_end(o: &ObservedNode) -> Option<Lsn> {
    let seen = o.lsn.is_some() || o.receive_lsn.is_some() || o.replay_lsn.is_some();
    if seen || o.control.as_ref().is_some_and(|c| c.shut_down_cleanly()) {
        wal_end(o)
    } else {
        None
    }
}

/// Why a node's end of WAL is unknown, with what its control data does say.
fn unknown_end(x: &str, xo: &ObservedNode) -> String {
    match &xo.control {
        Some(c) => format!(
            "{x} did not shut down cleanly (cluster state \"{}\", latest checkpoint {}{}): its WAL past that point is unknown",
            c.cluster_state,
            c.latest_checkpoint,
            if c.min_recovery_end.0 > 0 {
                format!(", minimum recovery end {}", c.min_recovery_end)
            } else {
                String::new()
            }
        ),
        None => format!("{x}'s end of WAL is unknown"),
    }
}

/// Why pg_rewind could not read `x`'s own WAL, when its pg_wal (seen through its files) shows
/// a segment missing: pg_rewind reads it from the REDO location of the last checkpoint before
/// the fork point up to `x`'s end of WAL. A running node's pg_wal is not listed (None).
fn missing_wal(x: &str, xo: &ObservedNode, fork: Lsn) -> Option<String> {
    let (c, w) = (xo.control.as_ref()?, xo.wal_segments.as_ref()?);
    let end = wal_end(xo).unwrap_or(fork).max(fork);
    // Latest checkpoint before the fork: pg_rewind starts at its REDO location (crash
    // recovery before the rewind keeps that WAL). After the fork: the checkpoint before the
    // fork is older than the fork itself, so at least the WAL from the fork on is needed.
    let (from, start) = if c.latest_checkpoint <= fork {
        (
            c.latest_checkpoint_redo,
            format!(
                "its latest checkpoint's REDO location {}",
                c.latest_checkpoint_redo
            ),
        )
    } else {
        (
            fork,
            format!(
                "before the fork point {fork} (its latest checkpoint {} is past the fork)",
                c.latest_checkpoint
            ),
        )
    };
    let gap = w.first_missing(from, end)?;
    Some(format!(
        "pg_rewind reads {x}'s own WAL from {start} up to {end}, and {x}'s pg_wal no longer has the segment that starts at {gap}{}",
        w.oldest()
            .map(|o| format!(" (its oldest starts at {o})"))
            .unwrap_or_default()
    ))
}

fn diverged(x: &str, xo: &ObservedNode, fork: Option<Lsn>, reason: String) -> Rejoin {
    if !can_rewind(xo) {
        return Rejoin::Clone {
            reason: format!(
                "{reason}; pg_rewind needs wal_log_hints=on or data checksums, which {x} has not"
            ),
        };
    }
    match fork.and_then(|f| missing_wal(x, xo, f)) {
        Some(why) if archives(xo) => Rejoin::Rewind {
            reason: format!(
                "{reason}; {why}: it comes from the archive (pg_rewind --restore-target-wal: with \
                 archive_mode on, {x} recycled no segment before archiving it)"
            ),
        },
        Some(why) => Rejoin::Clone {
            reason: format!("{reason}; {why}"),
        },
        None => Rejoin::Rewind { reason },
    }
}

/// `x` ran with the declared archive: archive_mode on (it recycles no segment before archiving
/// it) and a restore_command (pg_rewind --restore-target-wal reads the archive through it).
/// Observation reads archive_mode only when the topology declares an archive.
fn archives(xo: &ObservedNode) -> bool {
    let set = |k: &str| {
        xo.settings
            .get(k)
            .map(|s| s.value.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    matches!(set("archive_mode").as_deref(), Some("on" | "always"))
        && set("restore_command").is_some()
}

/// How `x` joins `up` (which is, or will be, on the primary's newest timeline).
pub fn decide_rejoin(
    x: &str,
    up: &str,
    o: &ObservedCluster,
    promotion: Option<&Promotion>,
) -> Rejoin {
    let xo = observed(o, x);
    match promotion {
        Some(p) => rejoin_after_promotion(x, &xo, o, p),
        None => rejoin_by_timeline(x, &xo, up, &observed(o, up)),
    }
}

/// How `x` joins the node this plan promotes: the old primary of a switchover follows; any other
/// node follows unless it may have WAL past what the candidate has received when promoted.
fn rejoin_after_promotion(
    x: &str,
    xo: &ObservedNode,
    o: &ObservedCluster,
    p: &Promotion,
) -> Rejoin {
    if p.old.as_deref() == Some(x) {
        match &p.kind {
            PromotionKind::Switchover => {
                return Rejoin::Follow {
                    reason: format!(
                        "{x} is shut down cleanly and {} replays its shutdown checkpoint before it is promoted",
                        p.candidate
                    ),
                }
            }
            PromotionKind::FinishSwitchover { checkpoint } => {
                return Rejoin::Follow {
                    reason: format!(
                        "{x} was shut down cleanly at {checkpoint}, which {} has replayed",
                        p.candidate
                    ),
                }
            }
            PromotionKind::Failover { .. } => {}
        }
    }
    // Forks at what the candidate has received when it is promoted: in a switchover, all the
    // old primary wrote (the candidate catches up first).
    let co = observed(o, &p.candidate);
    let caught_up = match (&p.kind, p.old.as_deref()) {
        (PromotionKind::Failover { .. }, _) | (_, None) => None,
        (_, Some(old)) => wal_end(&observed(o, old)),
    };
    let fork = received(&co).max(caught_up).unwrap_or_default();
    let new_tl = co.timeline.map(|t| t + 1).unwrap_or(0);
    rejoin_at_fork(x, xo, fork, new_tl, true, |_| {
        format!("{x} has no WAL past the fork point {fork} of timeline {new_tl}")
    })
}

/// The one rejoin rule at a fork point `fork` where timeline `tl` begins: `x` follows when its
/// WAL ends at or before the fork (`follow` says why), else it is rewound or cloned; when its
/// end is unknown it may be past the fork. `detail`: the reason says how far past.
fn rejoin_at_fork(
    x: &str,
    xo: &ObservedNode,
    fork: Lsn,
    tl: u32,
    detail: bool,
    follow: impl FnOnce(Lsn) -> String,
) -> Rejoin {
    let past = format!("{x} has WAL past the fork point {fork} of timeline {tl}");
    // What the node has at least (its last checkpoint when it crashed).
    match (known_wal_end(xo), wal_end(xo)) {
        (Some(e), _) if e <= fork => Rejoin::Follow { reason: follow(e) },
        (Some(e), _) if detail => diverged(
            x,
            xo,
            Some(fork),
            format!(
                "{past} (up to {e}, {} more)",
                ByteSize::human(e.bytes_after(fork))
            ),
        ),
        (None, Some(l)) if l > fork && detail => {
            diverged(x, xo, Some(fork), format!("{past} (at least up to {l})"))
        }
        (Some(_), _) => diverged(x, xo, Some(fork), past),
        (None, Some(l)) if l > fork => diverged(x, xo, Some(fork), past),
        (None, _) => may_be_past_fork(x, xo, fork, tl),
    }
}

/// How `x` joins `up` when nothing is promoted: it follows when it is on `up`'s timeline or
/// stopped before the point where `up`'s history left `x`'s timeline.
fn rejoin_by_timeline(x: &str, xo: &ObservedNode, up: &str, uo: &ObservedNode) -> Rejoin {
    let tl = xo.timeline();
    let (Some(tl), Some(utl)) = (tl, uo.timeline) else {
        return Rejoin::Follow {
            reason: format!("{x} and {up} share a timeline"),
        };
    };
    if tl == utl {
        return Rejoin::Follow {
            reason: format!("{x} is on {up}'s timeline {utl}"),
        };
    }
    let hist = &uo.timeline_history;
    let Some(pos) = hist.iter().position(|f| f.timeline == tl) else {
        return diverged(
            x,
            xo,
            None,
            format!("{x} is on timeline {tl}, which is not in {up}'s history (timeline {utl})"),
        );
    };
    let fork = hist[pos].fork_lsn;
    let next_tl = hist.get(pos + 1).map(|f| f.timeline).unwrap_or(utl);
    rejoin_at_fork(x, xo, fork, next_tl, false, |e| {
        format!(
            "{x} stopped at {e}, before the fork point {fork} of timeline {next_tl}: it can follow"
        )
    })
}

/// `x`'s end of WAL is unknown, so it may have WAL past the fork point of `timeline`.
fn may_be_past_fork(x: &str, xo: &ObservedNode, fork: Lsn, timeline: u32) -> Rejoin {
    diverged(
        x,
        xo,
        Some(fork),
        format!(
            "{}, so it may have WAL past the fork point {fork} of timeline {timeline}",
            unknown_end(x, xo)
        ),
    )
}

/// Decide the promotion and every node's fate, or refuse.
pub fn analyse(
    d: &Desired,
    o: &ObservedCluster,
    opts: &PlanOptions,
) -> Result<Analysis, PlanError> {
    let mut notes = Vec::new();
    let running = running_primaries(o);
    let reachable_running = reachable_running_primaries(d, o, &running)?;
    let eff = effective_topology(d, o, &reachable_running, &mut notes)?;
    let p = eff.primary().name.clone();
    let pobs = observed(o, &p);
    let old = crate::diff::current_primary(&eff, o);

    let mut fates = BTreeMap::new();
    let promotion = match old.as_deref() {
        Some(op) if op == p => {
            fates.insert(p.clone(), primary_fate(&p, &pobs)?);
            None
        }
        None if needs_data(&pobs) => return Err(PlanError::PrimaryHasNoData { node: p }),
        other => {
            let ctx = PromotionContext {
                d,
                o,
                opts,
                candidate: &p,
                cobs: &pobs,
                old: other,
                reachable_running: &reachable_running,
            };
            let verdict = assess::node(d, o, &p, other);
            let kind = ctx.kind(&verdict, &mut notes)?;
            fates.insert(p.clone(), Fate::Promote);
            let target = match other.map(|n| observed(o, n)) {
                Some(oo) if oo.running && oo.reachable => wal_end(&oo),
                _ => received(&pobs),
            };
            Some(Promotion {
                candidate: p.clone(),
                old: other.map(str::to_string),
                kind,
                replay_lag: match (target, pobs.replay_lsn) {
                    (Some(t), Some(r)) => t.bytes_after(r),
                    _ => 0,
                },
                conflict: match verdict {
                    Verdict::ReplayBlocked { conflict, .. } => Some(conflict),
                    _ => None,
                },
            })
        }
    };

    standby_fates(&eff, o, promotion.as_ref(), old.as_deref(), &mut fates);
    check_upstreams_reachable(&eff, &fates)?;
    if let Some(pr) = &promotion {
        if let Some(op) = &pr.old {
            if let PromotionKind::Failover { fence: false, .. } = pr.kind {
                notes.push(format!(
                    "{op}'s host is unreachable, so it cannot be fenced: make sure it stays down"
                ));
            }
        }
    }
    Ok(Analysis {
        eff,
        promotion,
        fates,
        notes,
    })
}

/// The running primaries whose SQL answers; more than one, none of them the declared primary, is
/// a split brain pgtopo refuses to choose in.
fn reachable_running_primaries<'a>(
    d: &Desired,
    o: &ObservedCluster,
    running: &'a [String],
) -> Result<Vec<&'a String>, PlanError> {
    let declared = &d.primary().name;
    let reachable_running: Vec<&String> = running
        .iter()
        .filter(|n| o.nodes.get(*n).is_some_and(|x| x.reachable))
        .collect();
    if reachable_running.len() > 1 && !reachable_running.contains(&declared) {
        return Err(PlanError::TwoPrimaries {
            nodes: reachable_running
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(reachable_running)
}

/// The topology the plan realises: the declared one, or, when the declared primary is
/// unreachable, the declared one re-rooted at the node that is primary now or else at the best
/// failover candidate (with a note telling the operator to update topology.yaml).
fn effective_topology(
    d: &Desired,
    o: &ObservedCluster,
    reachable_running: &[&String],
    notes: &mut Vec<String>,
) -> Result<Desired, PlanError> {
    let declared = d.primary().name.clone();
    let dobs = observed(o, &declared);
    if actionable(&dobs) {
        return Ok(d.clone());
    }
    if let Some(c) = reachable_running.iter().find(|n| {
        ***n != declared
            && d.nodes
                .get(n.as_str())
                .is_some_and(|x| x.role != DesiredRole::Absent)
    }) {
        notes.push(format!(
            "topology.yaml declares {declared} primary, but {declared} is unreachable and {c} is primary: update topology.yaml"
        ));
        return Ok(reroot(d, c));
    }
    let choice = candidate::choose(d, o, &[&declared]);
    let Some((c, prio, at)) = choice.chosen.clone() else {
        return Err(PlanError::NoCandidate {
            primary: declared,
            skipped: match choice.skipped_text() {
                t if t.is_empty() => String::new(),
                t => format!(" (passed over: {t})"),
            },
        });
    };
    notes.push(format!(
        "{declared} (the declared primary) is unreachable ({}); {c} (failover_priority {prio}, received {at}) takes its place: declare it in topology.yaml",
        why_down(&dobs)
    ));
    if !choice.skipped.is_empty() {
        notes.push(format!(
            "failover candidates passed over: {}",
            choice.skipped_text()
        ));
    }
    Ok(reroot(d, &c))
}

/// The fate of the primary that is already primary: keep it, or start it when it is stopped.
fn primary_fate(p: &str, pobs: &ObservedNode) -> Result<Fate, PlanError> {
    if pobs.running {
        return Ok(Fate::Keep);
    }
    if !actionable(pobs) {
        return Err(PlanError::Unreachable {
            node: p.to_string(),
            why: why_down(pobs),
            needed_for: "start it as the primary".into(),
        });
    }
    Ok(Fate::StartPrimary)
}

/// What deciding a promotion reads: the candidate (the effective primary, now a standby) and the
/// primary it replaces.
struct PromotionContext<'a> {
    d: &'a Desired,
    o: &'a ObservedCluster,
    opts: &'a PlanOptions,
    candidate: &'a str,
    cobs: &'a ObservedNode,
    /// The current primary, if any node claims to be.
    old: Option<&'a str>,
    reachable_running: &'a [&'a String],
}

impl PromotionContext<'_> {
    /// Why the candidate is promoted, or why it cannot be.
    fn kind(&self, verdict: &Verdict, notes: &mut Vec<String>) -> Result<PromotionKind, PlanError> {
        self.check_candidate_ready()?;
        self.check_candidate_data(verdict)?;
        let oobs = self.old.map(|n| observed(self.o, n).into_owned());
        Ok(match &oobs {
            Some(oo) if oo.running && oo.reachable => {
                self.check_switchover_candidate(verdict)?;
                self.switchover(oo)?
            }
            Some(oo)
                if oo.control.as_ref().is_some_and(|c| {
                    crate::observe::shut_down_cleanly(
                        &c.cluster_state,
                        crate::observe::CleanAs::Primary,
                    ) && replayed_past_checkpoint(self.cobs.replay_lsn, c.latest_checkpoint)
                }) =>
            {
                PromotionKind::FinishSwitchover {
                    checkpoint: oo
                        .control
                        .as_ref()
                        .map(|c| c.latest_checkpoint)
                        .unwrap_or_default(),
                }
            }
            _ => self.failover(oobs.as_ref(), notes)?,
        })
    }

    /// Only a running, reachable standby can be promoted.
    fn check_candidate_ready(&self) -> Result<(), PlanError> {
        let cobs = self.cobs;
        if !(cobs.reachable && cobs.running) {
            return Err(PlanError::CandidateNotReady {
                candidate: self.candidate.to_string(),
                why: format!("it is not running ({})", why_down(cobs)),
            });
        }
        if observed_role(cobs) != Some(Role::Standby) {
            return Err(PlanError::CandidateNotReady {
                candidate: self.candidate.to_string(),
                why: "it is not a standby".into(),
            });
        }
        Ok(())
    }

    /// The assessment's verdict on the candidate's data: a data directory of another system,
    /// or a history that differs from its upstream's, is never promoted (the other nodes would
    /// all have to be cloned from it).
    fn check_candidate_data(&self, verdict: &Verdict) -> Result<(), PlanError> {
        match verdict {
            Verdict::Foreign { .. } | Verdict::Diverged { .. } => {
                Err(PlanError::CandidateNotReady {
                    candidate: self.candidate.to_string(),
                    why: verdict.reason(self.candidate).unwrap_or_default(),
                })
            }
            _ => Ok(()),
        }
    }

    /// A switchover needs a candidate that receives the old primary's WAL now (directly or
    /// through a cascade), and whose replay no session blocks (unless
    /// `switchover.cancel_conflicting_queries` cancels them).
    fn check_switchover_candidate(&self, verdict: &Verdict) -> Result<(), PlanError> {
        let candidate = self.candidate.to_string();
        if let Some(old) = self.old {
            if let Some(why) = not_fed_by(self.d, self.o, self.candidate, old) {
                return Err(PlanError::CandidateNotReceiving { candidate, why });
            }
        }
        match verdict {
            Verdict::NotReceiving { .. } | Verdict::SlotLost { .. } => {
                Err(PlanError::CandidateNotReceiving {
                    why: verdict.reason(self.candidate).unwrap_or_default(),
                    candidate,
                })
            }
            Verdict::ReplayBlocked { .. } if !self.d.switchover.cancel_conflicting_queries => {
                Err(PlanError::CandidateReplayBlocked {
                    why: verdict.reason(self.candidate).unwrap_or_default(),
                    candidate,
                })
            }
            _ => Ok(()),
        }
    }

    /// The old primary is healthy: a switchover, if the candidate is within `switchover.max_lag`.
    fn switchover(&self, oo: &ObservedNode) -> Result<PromotionKind, PlanError> {
        let at = self.cobs.replay_lsn.or(self.cobs.lsn).unwrap_or_default();
        let lag = wal_end(oo).unwrap_or_default().bytes_after(at);
        if lag > self.d.switchover.max_lag.0 {
            return Err(PlanError::SwitchoverLagTooLarge {
                candidate: self.candidate.to_string(),
                primary: self.old.unwrap_or_default().to_string(),
                bytes: lag,
                max_lag: self.d.switchover.max_lag.0,
            });
        }
        Ok(PromotionKind::Switchover)
    }

    /// The old primary is down and not proven clean: a failover, refused unless the old primary
    /// can be fenced or is unreachable, no other primary runs, the candidate is close enough to
    /// the most advanced standby, and the operator consented.
    fn failover(
        &self,
        oobs: Option<&ObservedNode>,
        notes: &mut Vec<String>,
    ) -> Result<PromotionKind, PlanError> {
        let p = self.candidate;
        let op = self.old;
        if let Some(oo) = oobs.filter(|oo| oo.running && !oo.host_reachable) {
            // It runs (its SQL answered) but pgtopo cannot reach its host to fence it.
            return Err(PlanError::OldPrimaryRunning {
                old: op.unwrap_or_default().to_string(),
                candidate: p.to_string(),
                why: why_down(oo),
            });
        }
        if let Some(other) = self
            .reachable_running
            .iter()
            .find(|n| n.as_str() != p && Some(n.as_str()) != op)
        {
            return Err(PlanError::AnotherPrimary {
                other: (*other).clone(),
                candidate: p.to_string(),
            });
        }
        let cand_at = received(self.cobs).unwrap_or_default();
        self.check_candidate_not_behind(cand_at, notes)?;
        let last_known = oobs.and_then(known_wal_end);
        let exposure = last_known.map(|l| l.bytes_after(cand_at));
        if !(self.opts.allow_failover || self.d.failover.allow) {
            return Err(PlanError::FailoverNotAllowed {
                primary: op.unwrap_or("the old primary").to_string(),
                candidate: p.to_string(),
                exposure: match exposure {
                    Some(0) => format!(
                        " ({p} has received all WAL {} was last seen to write, but later writes may be lost)",
                        op.unwrap_or("the old primary")
                    ),
                    Some(b) => format!(", up to {b} bytes of WAL may be lost"),
                    None => ", an unknown amount of WAL may be lost".into(),
                },
            });
        }
        Ok(PromotionKind::Failover {
            exposure,
            fence: oobs.is_some_and(|oo| oo.host_reachable || (oo.running && oo.reachable)),
            last_known,
        })
    }

    /// Refuse a candidate further behind the most advanced reachable standby than
    /// `failover.max_lag`, or behind it at all under synchronous replication without
    /// `--accept-data-loss`; note a tolerated gap.
    fn check_candidate_not_behind(
        &self,
        cand_at: Lsn,
        notes: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        let (d, p) = (self.d, self.candidate);
        let except: Vec<&str> = self.old.into_iter().collect();
        let Some((best, at)) = most_advanced_standby(d, self.o, &except) else {
            return Ok(());
        };
        let behind = at.bytes_after(cand_at);
        if behind > d.failover.max_lag.0 {
            return Err(PlanError::CandidateTooFarBehind {
                candidate: p.to_string(),
                best,
                bytes: behind,
                max_lag: d.failover.max_lag.0,
            });
        }
        if behind > 0 && d.replication.synchronous.is_some() && !self.opts.accept_data_loss {
            return Err(PlanError::SyncDataLoss {
                candidate: p.to_string(),
                best,
                bytes: behind,
            });
        }
        if behind > 0 {
            notes.push(format!(
                "{p} is {behind} bytes behind {best}, the most advanced reachable standby (within failover.max_lag {})",
                d.failover.max_lag
            ));
        }
        Ok(())
    }
}

/// The fate of every node but the effective primary.
fn standby_fates(
    eff: &Desired,
    o: &ObservedCluster,
    promotion: Option<&Promotion>,
    old: Option<&str>,
    fates: &mut BTreeMap<String, Fate>,
) {
    let p = &eff.primary().name;
    for n in eff.nodes.values() {
        if &n.name == p {
            continue;
        }
        let fate = match &n.role {
            DesiredRole::Absent => Fate::Retire,
            DesiredRole::Primary => unreachable!("one primary"),
            DesiredRole::Standby { upstream } => {
                let verdict = assess::node(eff, o, &n.name, old);
                standby_verdict_fate(&verdict, &n.name, upstream)
                    .unwrap_or_else(|| standby_fate(eff, o, &n.name, upstream, promotion, old))
            }
        };
        fates.insert(n.name.clone(), fate);
    }
}

/// Refuse to clone, rejoin, re-point or start a standby whose upstream is unreachable.
fn check_upstreams_reachable(
    eff: &Desired,
    fates: &BTreeMap<String, Fate>,
) -> Result<(), PlanError> {
    for n in eff.present() {
        let DesiredRole::Standby { upstream } = &n.role else {
            continue;
        };
        let verb = match fates.get(&n.name) {
            Some(Fate::New { .. }) | Some(Fate::Rejoin(Rejoin::Clone { .. })) => "clone",
            Some(Fate::Rejoin(_)) => "rejoin",
            Some(Fate::Repoint) => "re-point",
            Some(Fate::Start) => "start",
            _ => continue,
        };
        if let Some(Fate::Deferred { why }) = fates.get(upstream) {
            return Err(PlanError::Unreachable {
                node: upstream.clone(),
                why: why.clone(),
                needed_for: format!("{verb} {} as its standby", n.name),
            });
        }
    }
    Ok(())
}

/// The fate a standby's verdict decides by itself: unreachable, new, or cloned again (another
/// system, split brain, diverged on one timeline, slot lost). None: the ordinary rules decide.
fn standby_verdict_fate(v: &Verdict, x: &str, upstream: &str) -> Option<Fate> {
    Some(match v {
        Verdict::Unreachable { why } => Fate::Deferred { why: why.clone() },
        Verdict::NoData => Fate::New {
            move_aside: false,
            reason: format!("new standby of {upstream}"),
        },
        Verdict::Foreign { .. } => Fate::New {
            move_aside: true,
            reason: v.reason(x)?,
        },
        v if v.needs_clone() => Fate::Rejoin(Rejoin::Clone {
            reason: v.reason(x)?,
        }),
        _ => return None,
    })
}

fn standby_fate(
    eff: &Desired,
    o: &ObservedCluster,
    x: &str,
    up: &str,
    promotion: Option<&Promotion>,
    old: Option<&str>,
) -> Fate {
    let xo = observed(o, x);
    let was_primary = observed_role(&xo) == Some(Role::Primary);
    if was_primary || promotion.is_some_and(|p| p.old.as_deref() == Some(x)) || old == Some(x) {
        return Fate::Rejoin(decide_rejoin(x, up, o, promotion));
    }
    if let Some(r) = follows_second_primary(eff, o, x, &xo, old) {
        return Fate::Rejoin(r);
    }
    if promotion.is_none() {
        if let Some(r) = past_primary_end(eff, o, x, &xo) {
            return Fate::Rejoin(r);
        }
    }
    // A standby of the old timeline whose WAL goes past the new fork point (in a switchover, a
    // stopped one that received WAL the old primary never wrote; a running one streams what the
    // old primary sends, and positions read at different moments under writes cannot be
    // compared).
    let planned = promotion.is_some_and(|p| !matches!(p.kind, PromotionKind::Failover { .. }));
    let on_new_branch = match decide_rejoin(x, up, o, promotion) {
        _ if planned && xo.running => None,
        r @ (Rejoin::Rewind { .. } | Rejoin::Clone { .. }) => Some(r),
        Rejoin::Follow { .. } => None,
    };
    if let Some(r) = on_new_branch {
        return Fate::Rejoin(r);
    }
    if assess::configured_as_declared(eff, x, up, &xo) {
        if xo.running {
            Fate::Keep
        } else {
            Fate::Start
        }
    } else {
        Fate::Repoint
    }
}

/// A standby that streams from a second primary on the primary's timeline receives that node's
/// writes until it is fenced: its history forks from the primary's on one timeline, which
/// pg_rewind cannot repair, so it is cloned again like its upstream.
fn follows_second_primary(
    eff: &Desired,
    o: &ObservedCluster,
    x: &str,
    xo: &ObservedNode,
    old: Option<&str>,
) -> Option<Rejoin> {
    let up = observed_upstream(eff, xo).filter(|_| xo.streaming)?;
    let uo = observed(o, &up);
    let primary = old.unwrap_or(&eff.primary().name);
    let po = observed(o, primary);
    let second = up != primary
        && uo.running
        && uo.role == Some(Role::Primary)
        && uo.timeline.is_some()
        && uo.timeline == po.timeline;
    second.then(|| Rejoin::Clone {
        reason: format!(
            "{x} streams from {up}, a second primary on timeline {}: it holds {up}'s writes past the fork, which pg_rewind cannot undo on one timeline",
            uo.timeline.unwrap_or_default()
        ),
    })
}

/// A stopped standby with WAL past the primary's end of WAL on the primary's timeline (it
/// followed a node that diverged) cannot follow anyone of the primary's history: cloned again.
fn past_primary_end(
    eff: &Desired,
    o: &ObservedCluster,
    x: &str,
    xo: &ObservedNode,
) -> Option<Rejoin> {
    let p = &eff.primary().name;
    let po = observed(o, p);
    let tl = xo.timeline()?;
    // Only a stopped standby's end is fixed: a running one's and the primary's are read at
    // different moments, and under writes either may be ahead.
    if xo.running || !po.running || po.timeline != Some(tl) {
        return None;
    }
    let (mine, theirs) = (known_wal_end(xo)?, wal_end(&po)?);
    (mine > theirs).then(|| Rejoin::Clone {
        reason: format!(
            "{x} has WAL up to {mine}, past {p}'s (the primary's) end of WAL {theirs} on the same timeline"
        ),
    })
}

/// Why `node` does not receive `from`'s WAL: the chain of upstreams it streams from (as
/// observed) does not reach `from`. `None`: it does.
pub fn not_fed_by(d: &Desired, o: &ObservedCluster, node: &str, from: &str) -> Option<String> {
    let system = observed(o, from).system_identifier.clone();
    let mut at = node.to_string();
    for _ in 0..=o.nodes.len() {
        let x = observed(o, &at);
        let up = crate::diff::observed_upstream(d, &x)
            .filter(|_| x.streaming && x.system_identifier == system);
        match up {
            Some(u) if u == from => return None,
            Some(u) => at = u,
            None => break,
        }
    }
    Some(format!(
        "{node} does not receive {from}'s WAL: it streams from {}",
        if at == node {
            "nothing".to_string()
        } else {
            at
        }
    ))
}
