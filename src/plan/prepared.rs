//! Prepared transactions across a planned switchover. PREPARE TRANSACTION is WAL-logged and a
//! standby keeps what it replayed, so the old primary's prepared transactions are prepared on
//! the new primary once it is promoted (and nowhere else is their lock or snapshot released):
//! the plan names them so that someone finishes them there.

use crate::diff::observed;
use crate::observe::{ObservedCluster, PreparedXact};

use super::analysis::{Promotion, PromotionKind};

/// The old primary's prepared transactions when the plan is a switchover, with the note that
/// says what becomes of them. None when there are none (or no switchover).
pub fn switchover_warning(
    promotion: Option<&Promotion>,
    o: &ObservedCluster,
) -> Option<(String, Vec<PreparedXact>)> {
    let p = promotion.filter(|p| p.kind == PromotionKind::Switchover)?;
    let old = p.old.as_deref()?;
    let xacts = observed(o, old).prepared_xacts.clone();
    if xacts.is_empty() {
        return None;
    }
    let names: Vec<String> = xacts.iter().map(|x| x.to_string()).collect();
    let note = format!(
        "warning: {old} has {} prepared transaction(s): {}. They survive the switchover: once promoted, {} has them prepared, holding their locks, until someone runs COMMIT PREPARED or ROLLBACK PREPARED there",
        xacts.len(),
        names.join(", "),
        p.candidate
    );
    Some((note, xacts))
}

#[cfg(test)]
mod tests {
    use crate::observe::fixtures::{desired3, healthy, set_primary};
    use crate::observe::PreparedXact;
    use crate::plan::{build, PlanOptions};

    #[test]
    fn a_switchover_names_the_old_primarys_prepared_transactions() {
        let mut d = desired3();
        let mut o = healthy(&d);
        let x = PreparedXact {
            gid: "tx-42".into(),
            owner: "app".into(),
            database: "shop".into(),
            prepared: "2026-11-29 21:00:00+00".into(),
        };
        o.nodes.get_mut("n1").unwrap().prepared_xacts = vec![x.clone()];
        let p = build(&d, &o, &PlanOptions::default()).unwrap();
        assert!(p.summary.prepared_transactions.is_empty(), "no switchover");
        set_primary(&mut d, "n2");
        let p = build(&d, &o, &PlanOptions::default()).unwrap();
        assert_eq!(p.summary.prepared_transactions, vec![x]);
        assert!(p.summary.notes[0].contains(
            "n1 has 1 prepared transaction(s): 'tx-42' (owner app, database shop, prepared 2026-11-29 21:00:00+00). They survive the switchover: once promoted, n2 has them prepared"
        ), "{:?}", p.summary.notes);
    }
}
