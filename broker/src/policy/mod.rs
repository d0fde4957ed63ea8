pub mod gateway_policy;
pub mod purposes;
pub mod quotas;
pub mod validation;
