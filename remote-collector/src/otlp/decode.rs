//! OTLP/HTTP bodies: protobuf or JSON, optionally gzip-compressed, into the
//! generated `ExportTraceServiceRequest`; and the bodies we answer with.
//!
//! OTLP/JSON (hex trace and span ids, enums as integers, 64-bit integers as
//! strings, lowerCamelCase keys) is handled by opentelemetry-proto's serde
//! support, so both encodings land in the same message type and are mapped by
//! the same code.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a Content-Type header value (parameters such as `charset` ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    #[error("the body is larger than {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("the body is not a valid protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(String),
    #[error("the body is not a valid OTLP/JSON ExportTraceServiceRequest: {0}")]
    Json(String),
}

/// Decompresses (when `gzip`) at most `max` bytes and decodes the request.
pub fn decode(
    body: &[u8],
    enc: Encoding,
    gzip: bool,
    max: usize,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    let inflated;
    let bytes = if gzip {
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
        flate2::read::GzDecoder::new(body)
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Gzip(e.to_string()))?;
        if out.len() > max {
            return Err(DecodeError::TooLarge(max));
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    match enc {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))
        }
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string())),
    }
}

/// The body of a successful export: an empty ExportTraceServiceResponse.
pub fn success_body(enc: Encoding) -> Vec<u8> {
    match enc {
        Encoding::Protobuf => Vec::new(), // every field at its default: zero bytes
        Encoding::Json => b"{}".to_vec(),
    }
}

/// google.rpc.Status, the body OTLP/HTTP sends with 4xx/5xx answers.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC code INVALID_ARGUMENT (for 400) / UNAVAILABLE (for 503) etc.
pub fn error_body(enc: Encoding, grpc_code: i32, message: &str) -> Vec<u8> {
    match enc {
        Encoding::Protobuf => RpcStatus { code: grpc_code, message: message.to_string() }.encode_to_vec(),
        Encoding::Json => {
            serde_json::json!({ "code": grpc_code, "message": message }).to_string().into_bytes()
        }
    }
}
