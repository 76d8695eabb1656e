//! The names `deploy/` gives the webhook, which every test that reaches it uses.

/// The namespace the webhook runs in.
pub const NAMESPACE: &str = "validator-webhook";

/// The webhook's Service.
pub const SERVICE: &str = "validator-webhook-service";

/// The name the API server verifies the webhook's certificate for: the Service's DNS name.
pub const SERVICE_HOST: &str = "validator-webhook-service.validator-webhook.svc";

/// The webhook's entry in its ValidatingWebhookConfiguration, which denials quote.
pub const WEBHOOK: &str = "validator-webhook.validator-webhook.svc";

/// The ValidatingWebhookConfiguration, and the Deployment.
pub const CONFIGURATION: &str = "validator-webhook";
pub const DEPLOYMENT: &str = "validator-webhook";
