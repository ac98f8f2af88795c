//! The one place where Berth's failures become ECS error names and HTTP
//! statuses. Everything user-visible that fails is an [`EcsError`].

use std::fmt;

macro_rules! error_codes {
    ($($code:ident => $status:expr),+ $(,)?) => {
        /// Every error name Berth puts in `__type` / `x-amzn-errortype`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($code),+ }

        impl ErrorCode {
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$code => stringify!($code)),+ }
            }
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$code => $status),+ }
            }
        }
    };
}

error_codes! {
    // Modelled ECS exceptions.
    AccessDeniedException => 400,
    AttributeLimitExceededException => 400,
    BlockedException => 400,
    ClientException => 400,
    ClusterContainsCapacityProviderException => 400,
    ClusterContainsContainerInstancesException => 400,
    ClusterContainsServicesException => 400,
    ClusterContainsTasksException => 400,
    ClusterNotFoundException => 400,
    ConflictException => 400,
    InvalidParameterException => 400,
    LimitExceededException => 400,
    MissingVersionException => 400,
    NamespaceNotFoundException => 400,
    NoUpdateAvailableException => 400,
    PlatformTaskDefinitionIncompatibilityException => 400,
    PlatformUnknownException => 400,
    ResourceInUseException => 400,
    ResourceNotFoundException => 400,
    ServerException => 500,
    ServiceDeploymentNotFoundException => 400,
    ServiceNotActiveException => 400,
    ServiceNotFoundException => 400,
    TargetNotConnectedException => 400,
    TargetNotFoundException => 400,
    TaskSetNotFoundException => 400,
    UnsupportedFeatureException => 400,
    UpdateInProgressException => 400,
    // Protocol-level errors common to AWS JSON services.
    UnknownOperationException => 400,
    SerializationException => 400,
    ValidationException => 400,
    RequestEntityTooLargeException => 413,
    MissingAuthenticationTokenException => 403,
    IncompleteSignatureException => 400,
    InvalidSignatureException => 400,
    UnrecognizedClientException => 400,
    ThrottlingException => 400,
    ServiceUnavailableException => 503,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as a client sees it: a name and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EcsError {
    pub code: ErrorCode,
    pub message: String,
}

impl EcsError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ClientException, message)
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterException, message)
    }
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerException, message)
    }
    pub fn cluster_not_found() -> Self {
        Self::new(ErrorCode::ClusterNotFoundException, "Cluster not found.")
    }
    /// The JSON body AWS JSON 1.1 clients parse.
    pub fn to_body(&self) -> String {
        serde_json::json!({ "__type": self.code.as_str(), "message": self.message }).to_string()
    }
}
