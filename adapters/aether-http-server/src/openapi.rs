//! The OpenAPI 3 document, generated from the route table and the ports types' schemas.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::routes::{Doc, Route};

fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "integer"},
            "status": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}}
        }, "required": ["code", "status", "message"]}}
    })
}

pub(crate) fn document<A>(routes: &[Route<A>]) -> String {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
        let mut params = vec![
            json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
        ];
        params.retain(|_| r.path.contains("{id}"));
        for (name, ty, required) in r.query {
            params.push(
                json!({"name": name, "in": "query", "required": required, "schema": {"type": ty}}),
            );
        }
        let mut op = json!({
            "operationId": r.id,
            "summary": r.summary,
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        match r.body {
            Doc::Json(f) => {
                op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": f(&mut generator)}}})
            }
            Doc::Raw => {
                op["requestBody"] = json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})
            }
            _ => {}
        }
        let ok = match r.reply {
            Doc::Json(f) => {
                json!({"description": "OK", "content": {"application/json": {"schema": f(&mut generator)}}})
            }
            Doc::Page(plural, f) => {
                json!({"description": "OK", "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {plural: {"type": "array", "items": f(&mut generator)}, "nextPageToken": {"type": "string"}},
                    "required": [plural]
                }}}})
            }
            Doc::Raw => {
                json!({"description": "OK (206 for a range)", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})
            }
            Doc::Empty | Doc::None => {
                json!({"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}})
            }
        };
        op["responses"]["200"] = ok;
        if r.id == "listEvents" {
            op["responses"]["200"]["content"]["text/event-stream"] =
                json!({"schema": {"type": "string"}});
        }
        let item = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        item[r.method.as_str().to_ascii_lowercase()] = op;
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert("Error".into(), error_schema());
    let doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "AetherFS API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
