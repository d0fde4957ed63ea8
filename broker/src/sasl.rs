//! SASL on Kafka listeners (SaslHandshake, SaslAuthenticate).
