//! Raw serde model of a policy file (pending).
