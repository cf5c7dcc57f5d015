//! One module per step kind: check (already done?), act, verify. Touches only its node.
