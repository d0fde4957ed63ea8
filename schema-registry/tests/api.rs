//! In-process HTTP tests of the registry API against `MemoryStore`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sluice_schema_registry::{CONTENT_TYPE, MemoryStore, Registry, RegistryError};
use tower::ServiceExt as _;

const ORDER_V1: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
  int32 quantity = 2;
}
"#;

const ORDER_V2: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
  int32 quantity = 2;
  string note = 3;
}
"#;

const ORDER_BAD: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
  string quantity = 2;
}
"#;

fn setup() -> (Registry, Router) {
    let registry = Registry::new(Arc::new(MemoryStore::new()));
    let router = registry.router();
    (registry, router)
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    content_type: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    send(app, method, uri, body, Some(CONTENT_TYPE)).await
}

async fn register(app: &Router, subject: &str, schema: &str) -> (StatusCode, Value) {
    call(
        app,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({ "schema": schema, "schemaType": "PROTOBUF" })),
    )
    .await
}

fn assert_error(result: &(StatusCode, Value), status: StatusCode, code: u64) {
    assert_eq!(result.0, status, "{:?}", result.1);
    assert_eq!(result.1["error_code"], json!(code), "{:?}", result.1);
    assert!(result.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn register_and_reregister_returns_same_id() {
    let (_, app) = setup();
    let first = register(&app, "orders-value", ORDER_V1).await;
    assert_eq!(first, (StatusCode::OK, json!({ "id": 1 })));
    let again = register(&app, "orders-value", ORDER_V1).await;
    assert_eq!(again, (StatusCode::OK, json!({ "id": 1 })));
    // The same schema under another subject shares the id.
    let other = register(&app, "other-value", ORDER_V1).await;
    assert_eq!(other.1, json!({ "id": 1 }));
    let versions = call(&app, "GET", "/subjects/orders-value/versions", None).await;
    assert_eq!(versions.1, json!([1]));
}

#[tokio::test]
async fn content_types_are_all_accepted() {
    let (_, app) = setup();
    let body = json!({ "schema": ORDER_V1 });
    for ct in [Some("application/json"), Some(CONTENT_TYPE), None] {
        let result = send(&app, "POST", "/subjects/s/versions", Some(body.clone()), ct).await;
        assert_eq!(result, (StatusCode::OK, json!({ "id": 1 })), "{ct:?}");
    }
}

#[tokio::test]
async fn compatible_evolution_and_incompatible_rejection() {
    let (_, app) = setup();
    register(&app, "orders-value", ORDER_V1).await;
    let v2 = register(&app, "orders-value", ORDER_V2).await;
    assert_eq!(v2, (StatusCode::OK, json!({ "id": 2 })));
    let bad = register(&app, "orders-value", ORDER_BAD).await;
    assert_error(&bad, StatusCode::CONFLICT, 409);
    assert!(bad.1["message"].as_str().unwrap().contains("quantity"));
    let latest = call(&app, "GET", "/subjects/orders-value/versions/latest", None).await;
    assert_eq!(latest.1["version"], json!(2));
    assert_eq!(latest.1["id"], json!(2));
    assert_eq!(latest.1["schemaType"], json!("PROTOBUF"));
    assert_eq!(latest.1["schema"], json!(ORDER_V2));
    assert_eq!(latest.1["references"], json!([]));

    // The compatibility endpoint agrees, and explains with verbose=true.
    let check = call(
        &app,
        "POST",
        "/compatibility/subjects/orders-value/versions/latest?verbose=true",
        Some(json!({ "schema": ORDER_BAD })),
    )
    .await;
    assert_eq!(check.1["is_compatible"], json!(false));
    assert_eq!(check.1["messages"].as_array().unwrap().len(), 1);
    let check = call(
        &app,
        "POST",
        "/compatibility/subjects/orders-value/versions/1",
        Some(json!({ "schema": ORDER_V2 })),
    )
    .await;
    assert_eq!(check.1, json!({ "is_compatible": true }));
    let check = call(
        &app,
        "POST",
        "/compatibility/subjects/orders-value/versions",
        Some(json!({ "schema": ORDER_BAD })),
    )
    .await;
    assert_eq!(check.1, json!({ "is_compatible": false }));
    let unknown = call(
        &app,
        "POST",
        "/compatibility/subjects/orders-value/versions/9",
        Some(json!({ "schema": ORDER_V2 })),
    )
    .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, 40402);
}

#[tokio::test]
async fn lookup_by_schema() {
    let (_, app) = setup();
    register(&app, "orders-value", ORDER_V1).await;
    register(&app, "orders-value", ORDER_V2).await;
    let found = call(
        &app,
        "POST",
        "/subjects/orders-value",
        Some(json!({ "schema": ORDER_V1, "schemaType": "PROTOBUF" })),
    )
    .await;
    assert_eq!(found.0, StatusCode::OK);
    assert_eq!(found.1["subject"], json!("orders-value"));
    assert_eq!(found.1["version"], json!(1));
    assert_eq!(found.1["id"], json!(1));
    let missing = call(
        &app,
        "POST",
        "/subjects/orders-value",
        Some(json!({ "schema": ORDER_BAD })),
    )
    .await;
    assert_error(&missing, StatusCode::NOT_FOUND, 40403);
    let no_subject = call(
        &app,
        "POST",
        "/subjects/nope",
        Some(json!({ "schema": ORDER_V1 })),
    )
    .await;
    assert_error(&no_subject, StatusCode::NOT_FOUND, 40401);
}

#[tokio::test]
async fn get_by_id_as_text_and_serialized() {
    let (_, app) = setup();
    register(&app, "orders-value", ORDER_V1).await;
    let text = call(&app, "GET", "/schemas/ids/1", None).await;
    assert_eq!(text.0, StatusCode::OK);
    assert_eq!(text.1["schema"], json!(ORDER_V1));
    assert_eq!(text.1["schemaType"], json!("PROTOBUF"));

    let serialized = call(&app, "GET", "/schemas/ids/1?format=serialized", None).await;
    let encoded = serialized.1["schema"].as_str().unwrap().to_owned();
    assert!(!encoded.contains(' '));
    // The serialized form compiles to the same canonical schema, so
    // registering it (as the Python serializer would) finds id 1.
    let from_descriptor = sluice_proto::compile(&encoded, &Default::default()).unwrap();
    let from_text = sluice_proto::compile(ORDER_V1, &Default::default()).unwrap();
    assert_eq!(from_descriptor.canonical_text(), from_text.canonical_text());
    assert_eq!(
        register(&app, "orders-value", &encoded).await.1,
        json!({ "id": 1 })
    );

    let raw = call(&app, "GET", "/schemas/ids/1/schema", None).await;
    assert_eq!(raw.1, json!(ORDER_V1));
    let raw = call(
        &app,
        "GET",
        "/subjects/orders-value/versions/1/schema",
        None,
    )
    .await;
    assert_eq!(raw.1, json!(ORDER_V1));
    let subjects = call(&app, "GET", "/schemas/ids/1/subjects", None).await;
    assert_eq!(subjects.1, json!(["orders-value"]));
    let versions = call(&app, "GET", "/schemas/ids/1/versions", None).await;
    assert_eq!(
        versions.1,
        json!([{ "subject": "orders-value", "version": 1 }])
    );
    let types = call(&app, "GET", "/schemas/types", None).await;
    assert_eq!(types.1, json!(["PROTOBUF"]));
    assert_error(
        &call(&app, "GET", "/schemas/ids/42", None).await,
        StatusCode::NOT_FOUND,
        40403,
    );
    assert_error(
        &call(&app, "GET", "/schemas/ids/abc", None).await,
        StatusCode::NOT_FOUND,
        40403,
    );
}

#[tokio::test]
async fn descriptor_form_registration_is_stored_as_text() {
    let (_, app) = setup();
    let encoded = sluice_proto::compile(ORDER_V1, &Default::default())
        .unwrap()
        .serialized_base64();
    assert_eq!(
        register(&app, "py-value", &encoded).await.1,
        json!({ "id": 1 })
    );
    let stored = call(&app, "GET", "/schemas/ids/1", None).await;
    assert!(
        stored.1["schema"]
            .as_str()
            .unwrap()
            .contains("message Order")
    );
    // The text form of the same schema is the same schema.
    assert_eq!(
        register(&app, "py-value", ORDER_V1).await.1,
        json!({ "id": 1 })
    );
}

#[tokio::test]
async fn soft_then_permanent_delete() {
    let (_, app) = setup();
    register(&app, "orders-value", ORDER_V1).await;
    register(&app, "orders-value", ORDER_V2).await;

    // Permanent delete needs a soft delete first.
    assert_error(
        &call(
            &app,
            "DELETE",
            "/subjects/orders-value/versions/1?permanent=true",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        40407,
    );
    let deleted = call(&app, "DELETE", "/subjects/orders-value/versions/1", None).await;
    assert_eq!(deleted, (StatusCode::OK, json!(1)));
    assert_error(
        &call(&app, "DELETE", "/subjects/orders-value/versions/1", None).await,
        StatusCode::NOT_FOUND,
        40406,
    );
    let visible = call(&app, "GET", "/subjects/orders-value/versions", None).await;
    assert_eq!(visible.1, json!([2]));
    let all = call(
        &app,
        "GET",
        "/subjects/orders-value/versions?deleted=true",
        None,
    )
    .await;
    assert_eq!(all.1, json!([1, 2]));
    assert_error(
        &call(&app, "GET", "/subjects/orders-value/versions/1", None).await,
        StatusCode::NOT_FOUND,
        40402,
    );
    let with_deleted = call(
        &app,
        "GET",
        "/subjects/orders-value/versions/1?deleted=true",
        None,
    )
    .await;
    assert_eq!(with_deleted.1["id"], json!(1));
    let gone = call(
        &app,
        "DELETE",
        "/subjects/orders-value/versions/1?permanent=true",
        None,
    )
    .await;
    assert_eq!(gone, (StatusCode::OK, json!(1)));

    // Whole subject.
    assert_error(
        &call(
            &app,
            "DELETE",
            "/subjects/orders-value?permanent=true",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        40405,
    );
    let soft = call(&app, "DELETE", "/subjects/orders-value", None).await;
    assert_eq!(soft, (StatusCode::OK, json!([2])));
    assert_error(
        &call(&app, "DELETE", "/subjects/orders-value", None).await,
        StatusCode::NOT_FOUND,
        40404,
    );
    assert_eq!(call(&app, "GET", "/subjects", None).await.1, json!([]));
    assert_eq!(
        call(&app, "GET", "/subjects?deleted=true", None).await.1,
        json!(["orders-value"])
    );
    let hard = call(
        &app,
        "DELETE",
        "/subjects/orders-value?permanent=true",
        None,
    )
    .await;
    assert_eq!(hard, (StatusCode::OK, json!([2])));
    assert_eq!(
        call(&app, "GET", "/subjects?deleted=true", None).await.1,
        json!([])
    );
    assert_error(
        &call(&app, "GET", "/subjects/orders-value/versions", None).await,
        StatusCode::NOT_FOUND,
        40401,
    );
    // Schema ids outlive their subjects so framed records stay readable.
    assert_eq!(
        call(&app, "GET", "/schemas/ids/2", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn references_across_files() {
    let (registry, app) = setup();
    let common = r#"syntax = "proto3";
package common;
message Money { int64 cents = 1; string currency = 2; }
"#;
    assert_eq!(register(&app, "common", common).await.1, json!({ "id": 1 }));
    let invoice = r#"syntax = "proto3";
package billing;
import "common.proto";
message Invoice { string id = 1; common.Money total = 2; }
"#;
    let body = json!({
        "schema": invoice,
        "schemaType": "PROTOBUF",
        "references": [{ "name": "common.proto", "subject": "common", "version": 1 }],
    });
    let created = call(
        &app,
        "POST",
        "/subjects/invoices-value/versions",
        Some(body.clone()),
    )
    .await;
    assert_eq!(created, (StatusCode::OK, json!({ "id": 2 })));
    let fetched = call(&app, "GET", "/schemas/ids/2", None).await;
    assert_eq!(
        fetched.1["references"],
        json!([{ "name": "common.proto", "subject": "common", "version": 1 }])
    );
    let compiled = registry.schema_by_id(2).await.unwrap();
    assert!(
        compiled
            .pool()
            .get_message_by_name("common.Money")
            .is_some()
    );
    let referenced = call(
        &app,
        "GET",
        "/subjects/common/versions/1/referencedby",
        None,
    )
    .await;
    assert_eq!(referenced.1, json!([2]));
    // A referenced version cannot be deleted.
    assert_error(
        &call(&app, "DELETE", "/subjects/common/versions/1", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42206,
    );
    // Without the reference the import cannot be resolved.
    let missing = register(&app, "invoices-value", invoice).await;
    assert_error(&missing, StatusCode::UNPROCESSABLE_ENTITY, 42201);
    assert!(
        missing.1["message"]
            .as_str()
            .unwrap()
            .contains("common.proto")
    );
    // A reference to a version that does not exist.
    let dangling = json!({
        "schema": invoice,
        "references": [{ "name": "common.proto", "subject": "common", "version": 7 }],
    });
    assert_error(
        &call(&app, "POST", "/subjects/x/versions", Some(dangling)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
}

#[tokio::test]
async fn embedded_option_files_need_no_registration() {
    let (registry, app) = setup();
    let schema = r#"syntax = "proto3";
import "buf/validate/validate.proto";
import "sluice/policy/v1/policy.proto";
message Signup {
  string email = 1 [(buf.validate.field).string.email = true,
                    (sluice.policy.v1.field) = { sensitivity: "pii" }];
}
"#;
    // Without references at all.
    assert_eq!(
        register(&app, "signups-value", schema).await.1,
        json!({ "id": 1 })
    );
    // With a reference to the (never registered) embedded subject.
    let body = json!({
        "schema": schema,
        "references": [{
            "name": "buf/validate/validate.proto",
            "subject": "buf/validate/validate.proto",
            "version": 1,
        }],
    });
    let created = call(
        &app,
        "POST",
        "/subjects/signups2-value/versions",
        Some(body),
    )
    .await;
    assert_eq!(created.0, StatusCode::OK, "{:?}", created.1);
    // The registry serves the embedded file like a registered subject.
    let served = call(
        &app,
        "GET",
        "/subjects/buf%2Fvalidate%2Fvalidate.proto/versions/1",
        None,
    )
    .await;
    assert_eq!(served.0, StatusCode::OK, "{:?}", served.1);
    assert!(
        served.1["schema"]
            .as_str()
            .unwrap()
            .contains("package buf.validate;")
    );
    let policy = call(
        &app,
        "GET",
        "/subjects/sluice%2Fpolicy%2Fv1%2Fpolicy.proto/versions/latest",
        None,
    )
    .await;
    assert!(policy.1["schema"].as_str().unwrap().contains("FieldPolicy"));

    // And the rules are live: the broker-facing API rejects a bad email.
    let compiled = registry.schema_by_id(1).await.unwrap();
    let message = compiled.message_by_indexes(&[0]).unwrap();
    // field 1, length 12, "not-an-email"
    let mut payload = vec![0x0a, 12];
    payload.extend_from_slice(b"not-an-email");
    let violations = compiled.validate(&message, &payload).unwrap_err();
    assert_eq!(violations[0].field, "email");
    let mut payload = vec![0x0a, 7];
    payload.extend_from_slice(b"a@b.com");
    assert_eq!(compiled.validate(&message, &payload), Ok(()));
}

#[tokio::test]
async fn normalize_maps_reformatted_text_to_same_id() {
    let (_, app) = setup();
    register(&app, "orders-value", ORDER_V1).await;
    let reformatted = "// same thing\nsyntax=\"proto3\";package shop;\
                       message Order{int32 quantity=2;string id=1;}";
    let result = call(
        &app,
        "POST",
        "/subjects/orders-value/versions?normalize=true",
        Some(json!({ "schema": reformatted })),
    )
    .await;
    assert_eq!(result, (StatusCode::OK, json!({ "id": 1 })));
    // A normalised registration stores the canonical text.
    let fresh = call(
        &app,
        "POST",
        "/subjects/fresh/versions?normalize=true",
        Some(json!({ "schema": ORDER_V2 })),
    )
    .await;
    let id = fresh.1["id"].as_u64().unwrap();
    let stored = call(&app, "GET", &format!("/schemas/ids/{id}"), None).await;
    let canonical = sluice_proto::compile(ORDER_V2, &Default::default())
        .unwrap()
        .canonical_text();
    assert_eq!(stored.1["schema"], json!(canonical));
}

#[tokio::test]
async fn config_endpoints() {
    let (_, app) = setup();
    assert_eq!(
        call(&app, "GET", "/config", None).await.1,
        json!({ "compatibilityLevel": "BACKWARD" })
    );
    let put = call(
        &app,
        "PUT",
        "/config",
        Some(json!({ "compatibility": "FULL" })),
    )
    .await;
    assert_eq!(put, (StatusCode::OK, json!({ "compatibility": "FULL" })));
    assert_eq!(
        call(&app, "GET", "/config", None).await.1,
        json!({ "compatibilityLevel": "FULL" })
    );
    assert_error(
        &call(
            &app,
            "PUT",
            "/config",
            Some(json!({ "compatibility": "SIDEWAYS" })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42203,
    );

    // Subject level.
    assert_error(
        &call(&app, "GET", "/config/orders-value", None).await,
        StatusCode::NOT_FOUND,
        40401,
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/config/orders-value?defaultToGlobal=true",
            None
        )
        .await
        .1,
        json!({ "compatibilityLevel": "FULL" })
    );
    register(&app, "orders-value", ORDER_V1).await;
    assert_error(
        &call(&app, "GET", "/config/orders-value", None).await,
        StatusCode::NOT_FOUND,
        40408,
    );
    let put = call(
        &app,
        "PUT",
        "/config/orders-value",
        Some(json!({ "compatibility": "none" })),
    )
    .await;
    assert_eq!(put.1, json!({ "compatibility": "NONE" }));
    // NONE lets the incompatible change through.
    assert_eq!(
        register(&app, "orders-value", ORDER_BAD).await.0,
        StatusCode::OK
    );
    let deleted = call(&app, "DELETE", "/config/orders-value", None).await;
    assert_eq!(deleted.1, json!({ "compatibilityLevel": "NONE" }));
    assert_eq!(
        call(
            &app,
            "GET",
            "/config/orders-value?defaultToGlobal=true",
            None
        )
        .await
        .1,
        json!({ "compatibilityLevel": "FULL" })
    );
}

#[tokio::test]
async fn mode_endpoints() {
    let (_, app) = setup();
    assert_eq!(
        call(&app, "GET", "/mode", None).await.1,
        json!({ "mode": "READWRITE" })
    );
    register(&app, "orders-value", ORDER_V1).await;
    let put = call(&app, "PUT", "/mode", Some(json!({ "mode": "READONLY" }))).await;
    assert_eq!(put.1, json!({ "mode": "READONLY" }));
    let refused = register(&app, "orders-value", ORDER_V2).await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, 42205);
    assert_error(
        &call(&app, "DELETE", "/subjects/orders-value", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42205,
    );
    // Reads still work.
    assert_eq!(
        call(&app, "GET", "/subjects/orders-value/versions/1", None)
            .await
            .0,
        StatusCode::OK
    );
    // A subject can be opened up on its own.
    assert_error(
        &call(&app, "GET", "/mode/orders-value", None).await,
        StatusCode::NOT_FOUND,
        40409,
    );
    assert_eq!(
        call(&app, "GET", "/mode/orders-value?defaultToGlobal=true", None)
            .await
            .1,
        json!({ "mode": "READONLY" })
    );
    call(
        &app,
        "PUT",
        "/mode/orders-value",
        Some(json!({ "mode": "READWRITE" })),
    )
    .await;
    assert_eq!(
        register(&app, "orders-value", ORDER_V2).await.0,
        StatusCode::OK
    );
    assert_error(
        &call(&app, "PUT", "/mode", Some(json!({ "mode": "SIDEWAYS" }))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42204,
    );
    let removed = call(&app, "DELETE", "/mode/orders-value", None).await;
    assert_eq!(removed.1, json!({ "mode": "READWRITE" }));
    assert_error(
        &register(&app, "orders-value", ORDER_V1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42205,
    );
}

#[tokio::test]
async fn error_bodies() {
    let (_, app) = setup();
    let invalid = register(&app, "s", "syntax = \"proto3\"; message {").await;
    assert_error(&invalid, StatusCode::UNPROCESSABLE_ENTITY, 42201);
    let unknown_type = register(&app, "s", "syntax = \"proto3\"; message A { Nope n = 1; }").await;
    assert_error(&unknown_type, StatusCode::UNPROCESSABLE_ENTITY, 42201);
    assert!(unknown_type.1["message"].as_str().unwrap().contains("Nope"));
    let empty = call(&app, "POST", "/subjects/s/versions", Some(json!({}))).await;
    assert_error(&empty, StatusCode::UNPROCESSABLE_ENTITY, 42201);
    let avro = call(
        &app,
        "POST",
        "/subjects/s/versions",
        Some(json!({ "schema": "{\"type\":\"string\"}", "schemaType": "AVRO" })),
    )
    .await;
    assert_error(&avro, StatusCode::UNPROCESSABLE_ENTITY, 42201);

    let response = app
        .clone()
        .oneshot(
            Request::post("/subjects/s/versions")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    register(&app, "s", ORDER_V1).await;
    assert_error(
        &call(&app, "GET", "/subjects/s/versions/0", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42202,
    );
    assert_error(
        &call(&app, "GET", "/subjects/s/versions/first", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42202,
    );
    assert_error(
        &call(&app, "GET", "/subjects/s/versions/5", None).await,
        StatusCode::NOT_FOUND,
        40402,
    );
    assert_error(
        &call(&app, "GET", "/subjects/none/versions/1", None).await,
        StatusCode::NOT_FOUND,
        40401,
    );
    assert_eq!(
        call(&app, "GET", "/no/such/route", None).await.0,
        StatusCode::NOT_FOUND
    );
    // Error codes match their HTTP statuses.
    assert_eq!(
        RegistryError::Store("x".into()).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(RegistryError::Store("x".into()).error_code(), 50001);
}

#[tokio::test]
async fn broker_facing_lookups() {
    let (registry, app) = setup();
    let schema = r#"syntax = "proto3";
package shop;
message Order { string id = 1; message Line { string sku = 1; } }
message Refund { string id = 1; }
"#;
    register(&app, "orders-value", schema).await;
    let latest = registry.latest_for_subject("orders-value").await.unwrap();
    assert_eq!((latest.id, latest.version), (1, 1));
    let compiled = registry.schema_by_id(1).await.unwrap();
    assert!(Arc::ptr_eq(
        &compiled,
        &registry.schema_by_id(1).await.unwrap()
    ));
    assert_eq!(
        compiled.message_by_indexes(&[1]).unwrap().full_name(),
        "shop.Refund"
    );
    assert_eq!(
        compiled.message_by_indexes(&[0, 0]).unwrap().full_name(),
        "shop.Order.Line"
    );
    assert!(matches!(
        registry.schema_by_id(99).await,
        Err(RegistryError::SchemaNotFound(_))
    ));
    assert!(matches!(
        registry.latest_for_subject("nope").await,
        Err(RegistryError::SubjectNotFound(_))
    ));
}
