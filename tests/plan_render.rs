//! Renderings of plans and drift reports: layout rules that golden files do not pin down alone
//! (colour only when asked, the markdown size limit, DOT grouping, the no-changes wording).

use pgtopo::config::DesiredRole;
use pgtopo::diff::drift::drift;
use pgtopo::observe::fixtures::{desired3, generated, healthy, set_primary};
use pgtopo::plan::{build, PlanOptions};
use pgtopo::render::plan::{dot, markdown, text, MARKDOWN_LIMIT, NO_CHANGES};

fn switchover() -> pgtopo::plan::Plan {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    build(&d, &healthy(&desired3()), &PlanOptions::default()).unwrap()
}

#[test]
fn colour_only_when_asked() {
    let p = switchover();
    assert!(!text(&p, false).contains('\u{1b}'));
    assert!(text(&p, true).contains('\u{1b}'));
}

#[test]
fn text_follows_the_spec_layout() {
    let t = text(&switchover(), false);
    let first = t.lines().next().unwrap();
    assert_eq!(first, "pgtopo will perform the following actions:");
    let destructive = t.find("Destructive or disruptive steps:").unwrap();
    assert!(destructive < t.find("# node.n1").unwrap());
    assert!(t.contains("  ! step 6 promote on n2: planned switchover from n1"));
    assert!(t.contains(
        "   3  catch_up           n2  n2 receives and replays n1's current WAL position"
    ));
    assert!(t.contains("   4  stop               n1  fast"));
    assert!(t.contains("← writes unavailable from here"));
    assert!(t.contains("Plan: 2 to add, 3 to change, 2 to remove. 13 steps."));
}

#[test]
fn no_changes() {
    let d = desired3();
    let p = build(&d, &healthy(&d), &PlanOptions::default()).unwrap();
    assert_eq!(text(&p, false).trim(), NO_CHANGES);
    assert!(markdown(&p).contains(NO_CHANGES));
}

#[test]
fn markdown_stays_under_the_limit() {
    let d = generated(3000);
    let mut before = d.clone();
    for nd in before.nodes.values_mut() {
        nd.settings.remove("max_wal_senders");
        if matches!(&nd.role, DesiredRole::Standby { upstream } if upstream != "n1") {
            nd.role = DesiredRole::Standby {
                upstream: "n1".into(),
            };
        }
    }
    let p = build(&d, &healthy(&before), &PlanOptions::default()).unwrap();
    let md = markdown(&p);
    assert!(md.len() < MARKDOWN_LIMIT, "{} bytes", md.len());
    assert!(md.starts_with("<!-- pgtopo:plan cluster=shop -->"));
    assert!(md.contains("Truncated to stay under 60 KB"));
    assert!(md.contains("**Writes unavailable:**"));
}

#[test]
fn dot_groups_steps_by_node() {
    let g = dot(&switchover());
    assert!(g.starts_with("digraph \"pgtopo plan shop\" {"));
    for n in ["n1", "n2", "n3"] {
        assert!(g.contains(&format!("subgraph \"cluster_{n}\"")));
    }
    assert!(g.contains("s4 -> s5;"));
    assert!(g.contains("color=red"));
}

#[test]
fn drift_renderings() {
    let d = desired3();
    let mut o = healthy(&d);
    o.nodes.get_mut("n3").unwrap().running = false;
    let r = drift(&d, &o);
    let t = pgtopo::render::drift::text(&r, false);
    assert!(t.contains("n3 is stopped"), "{t}");
    assert!(pgtopo::render::drift::markdown(&r).starts_with("<!-- pgtopo:drift cluster=shop -->"));
    let ok = drift(&d, &healthy(&d));
    assert_eq!(
        pgtopo::render::drift::text(&ok, false).trim(),
        pgtopo::render::drift::NO_DRIFT
    );
}
