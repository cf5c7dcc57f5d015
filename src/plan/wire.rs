//! The saved-plan file (`plan --out`, `plan --format json`, `apply <planfile>`): a versioned wire
//! struct, separate from the internal [`Plan`], the way Cargo keeps its lockfile and unit-graph
//! formats apart from its own types. The version is read before anything else, so a plan from an
//! older or newer pgtopo is refused by its version, not by whichever field happens to differ.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Plan;

/// Version of the saved-plan format; bump on an incompatible change.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A saved plan as it is written to and read from a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "pgtopo plan")]
pub struct PlanFile {
    pub format_version: u32,
    #[serde(flatten)]
    pub plan: Plan,
}

impl From<Plan> for PlanFile {
    fn from(plan: Plan) -> Self {
        PlanFile {
            format_version: PLAN_FORMAT_VERSION,
            plan,
        }
    }
}

impl From<PlanFile> for Plan {
    fn from(f: PlanFile) -> Self {
        f.plan
    }
}

/// Why a text is not a plan this pgtopo can apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a pgtopo plan: {0}")]
    NotAPlan(String),
    #[error("plan format {found}, this pgtopo reads {PLAN_FORMAT_VERSION}: make the plan again with this pgtopo")]
    Version { found: u32 },
}

/// The plan file's JSON text (pretty, with a trailing newline).
pub fn write(plan: &Plan) -> String {
    let mut s =
        serde_json::to_string_pretty(&PlanFile::from(plan.clone())).expect("a plan serialises");
    s.push('\n');
    s
}

/// Read a plan file: its version first, then the rest.
pub fn read(text: &str) -> Result<Plan, WireError> {
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let v: Version = serde_json::from_str(text).map_err(|e| WireError::NotAPlan(e.to_string()))?;
    if v.format_version != PLAN_FORMAT_VERSION {
        return Err(WireError::Version {
            found: v.format_version,
        });
    }
    let f: PlanFile = serde_json::from_str(text).map_err(|e| WireError::NotAPlan(e.to_string()))?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::{desired3, healthy, set_primary};

    fn a_plan() -> Plan {
        let mut d = desired3();
        let o = healthy(&d);
        set_primary(&mut d, "n2");
        crate::plan::build(&d, &o, &crate::plan::PlanOptions::default()).expect("plans")
    }

    #[test]
    fn the_current_format_round_trips() {
        let p = a_plan();
        let text = write(&p);
        assert!(text.starts_with("{\n  \"format_version\": 1,\n"), "{text}");
        assert_eq!(read(&text), Ok(p.clone()));
        let f = PlanFile::from(p.clone());
        assert_eq!(Plan::from(f), p);
    }

    #[test]
    fn another_format_version_is_refused_by_its_version() {
        for found in [0, PLAN_FORMAT_VERSION + 1] {
            // Whatever else a plan of that version holds does not matter.
            let text = format!("{{\"format_version\": {found}, \"steps\": \"a new shape\"}}");
            let e = read(&text).unwrap_err();
            assert_eq!(e, WireError::Version { found });
            assert!(
                e.to_string()
                    .contains(&format!("plan format {found}, this pgtopo reads 1")),
                "{e}"
            );
        }
        assert!(matches!(read("{}"), Err(WireError::NotAPlan(_))));
    }
}
