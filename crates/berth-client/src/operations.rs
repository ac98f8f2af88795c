//! Ties each generated ECS request type to its operation and response type,
//! so `Client::send` cannot pair a request with the wrong response.

use berth_types::Operation;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An ECS request shape: which operation it is the input of, and what that
/// operation answers.
pub trait EcsRequest: Serialize {
    const OPERATION: Operation;
    type Response: DeserializeOwned;
}

macro_rules! ecs_requests {
    ($($op:ident => $req:ident, $resp:ident;)+) => {
        $(
            impl EcsRequest for berth_types::$req {
                const OPERATION: Operation = Operation::$op;
                type Response = berth_types::$resp;
            }
        )+

        #[cfg(test)]
        const COVERED: &[Operation] = &[$(Operation::$op),+];
    };
}

// Every operation of the model, in the order of `Operation::ALL`; the test
// below fails when the generated model gains an operation missing here.
ecs_requests! {
    AssociateGatewayWithCluster => AssociateGatewayWithClusterRequest, AssociateGatewayWithClusterResponse;
    ContinueServiceDeployment => ContinueServiceDeploymentRequest, ContinueServiceDeploymentResponse;
    CreateCapacityProvider => CreateCapacityProviderRequest, CreateCapacityProviderResponse;
    CreateCluster => CreateClusterRequest, CreateClusterResponse;
    CreateDaemon => CreateDaemonRequest, CreateDaemonResponse;
    CreateExpressGatewayService => CreateExpressGatewayServiceRequest, CreateExpressGatewayServiceResponse;
    CreateGateway => CreateGatewayRequest, CreateGatewayResponse;
    CreateService => CreateServiceRequest, CreateServiceResponse;
    CreateTaskSet => CreateTaskSetRequest, CreateTaskSetResponse;
    DeleteAccountSetting => DeleteAccountSettingRequest, DeleteAccountSettingResponse;
    DeleteAttributes => DeleteAttributesRequest, DeleteAttributesResponse;
    DeleteCapacityProvider => DeleteCapacityProviderRequest, DeleteCapacityProviderResponse;
    DeleteCluster => DeleteClusterRequest, DeleteClusterResponse;
    DeleteDaemon => DeleteDaemonRequest, DeleteDaemonResponse;
    DeleteDaemonTaskDefinition => DeleteDaemonTaskDefinitionRequest, DeleteDaemonTaskDefinitionResponse;
    DeleteExpressGatewayService => DeleteExpressGatewayServiceRequest, DeleteExpressGatewayServiceResponse;
    DeleteGateway => DeleteGatewayRequest, DeleteGatewayResponse;
    DeleteService => DeleteServiceRequest, DeleteServiceResponse;
    DeleteTaskDefinitions => DeleteTaskDefinitionsRequest, DeleteTaskDefinitionsResponse;
    DeleteTaskSet => DeleteTaskSetRequest, DeleteTaskSetResponse;
    DeregisterContainerInstance => DeregisterContainerInstanceRequest, DeregisterContainerInstanceResponse;
    DeregisterTaskDefinition => DeregisterTaskDefinitionRequest, DeregisterTaskDefinitionResponse;
    DescribeCapacityProviders => DescribeCapacityProvidersRequest, DescribeCapacityProvidersResponse;
    DescribeClusters => DescribeClustersRequest, DescribeClustersResponse;
    DescribeContainerInstances => DescribeContainerInstancesRequest, DescribeContainerInstancesResponse;
    DescribeDaemon => DescribeDaemonRequest, DescribeDaemonResponse;
    DescribeDaemonDeployments => DescribeDaemonDeploymentsRequest, DescribeDaemonDeploymentsResponse;
    DescribeDaemonRevisions => DescribeDaemonRevisionsRequest, DescribeDaemonRevisionsResponse;
    DescribeDaemonTaskDefinition => DescribeDaemonTaskDefinitionRequest, DescribeDaemonTaskDefinitionResponse;
    DescribeExpressGatewayService => DescribeExpressGatewayServiceRequest, DescribeExpressGatewayServiceResponse;
    DescribeGateway => DescribeGatewayRequest, DescribeGatewayResponse;
    DescribeGatewayResources => DescribeGatewayResourcesRequest, DescribeGatewayResourcesResponse;
    DescribeGatewayRoute => DescribeGatewayRouteRequest, DescribeGatewayRouteResponse;
    DescribeServiceDeployments => DescribeServiceDeploymentsRequest, DescribeServiceDeploymentsResponse;
    DescribeServiceRevisions => DescribeServiceRevisionsRequest, DescribeServiceRevisionsResponse;
    DescribeServices => DescribeServicesRequest, DescribeServicesResponse;
    DescribeTaskDefinition => DescribeTaskDefinitionRequest, DescribeTaskDefinitionResponse;
    DescribeTaskSets => DescribeTaskSetsRequest, DescribeTaskSetsResponse;
    DescribeTasks => DescribeTasksRequest, DescribeTasksResponse;
    DisassociateGatewayFromCluster => DisassociateGatewayFromClusterRequest, DisassociateGatewayFromClusterResponse;
    DiscoverPollEndpoint => DiscoverPollEndpointRequest, DiscoverPollEndpointResponse;
    ExecuteCommand => ExecuteCommandRequest, ExecuteCommandResponse;
    GetTaskProtection => GetTaskProtectionRequest, GetTaskProtectionResponse;
    ListAccountSettings => ListAccountSettingsRequest, ListAccountSettingsResponse;
    ListAttributes => ListAttributesRequest, ListAttributesResponse;
    ListClusters => ListClustersRequest, ListClustersResponse;
    ListContainerInstances => ListContainerInstancesRequest, ListContainerInstancesResponse;
    ListDaemonDeployments => ListDaemonDeploymentsRequest, ListDaemonDeploymentsResponse;
    ListDaemonTaskDefinitions => ListDaemonTaskDefinitionsRequest, ListDaemonTaskDefinitionsResponse;
    ListDaemons => ListDaemonsRequest, ListDaemonsResponse;
    ListGatewayClusterAssociations => ListGatewayClusterAssociationsRequest, ListGatewayClusterAssociationsResponse;
    ListGatewayRoutes => ListGatewayRoutesRequest, ListGatewayRoutesResponse;
    ListGateways => ListGatewaysRequest, ListGatewaysResponse;
    ListServiceDeployments => ListServiceDeploymentsRequest, ListServiceDeploymentsResponse;
    ListServices => ListServicesRequest, ListServicesResponse;
    ListServicesByNamespace => ListServicesByNamespaceRequest, ListServicesByNamespaceResponse;
    ListTagsForResource => ListTagsForResourceRequest, ListTagsForResourceResponse;
    ListTaskDefinitionFamilies => ListTaskDefinitionFamiliesRequest, ListTaskDefinitionFamiliesResponse;
    ListTaskDefinitions => ListTaskDefinitionsRequest, ListTaskDefinitionsResponse;
    ListTasks => ListTasksRequest, ListTasksResponse;
    PutAccountSetting => PutAccountSettingRequest, PutAccountSettingResponse;
    PutAccountSettingDefault => PutAccountSettingDefaultRequest, PutAccountSettingDefaultResponse;
    PutAttributes => PutAttributesRequest, PutAttributesResponse;
    PutClusterCapacityProviders => PutClusterCapacityProvidersRequest, PutClusterCapacityProvidersResponse;
    RegisterContainerInstance => RegisterContainerInstanceRequest, RegisterContainerInstanceResponse;
    RegisterDaemonTaskDefinition => RegisterDaemonTaskDefinitionRequest, RegisterDaemonTaskDefinitionResponse;
    RegisterTaskDefinition => RegisterTaskDefinitionRequest, RegisterTaskDefinitionResponse;
    RunTask => RunTaskRequest, RunTaskResponse;
    StartTask => StartTaskRequest, StartTaskResponse;
    StopServiceDeployment => StopServiceDeploymentRequest, StopServiceDeploymentResponse;
    StopTask => StopTaskRequest, StopTaskResponse;
    SubmitAttachmentStateChanges => SubmitAttachmentStateChangesRequest, SubmitAttachmentStateChangesResponse;
    SubmitContainerStateChange => SubmitContainerStateChangeRequest, SubmitContainerStateChangeResponse;
    SubmitTaskStateChange => SubmitTaskStateChangeRequest, SubmitTaskStateChangeResponse;
    TagResource => TagResourceRequest, TagResourceResponse;
    UntagResource => UntagResourceRequest, UntagResourceResponse;
    UpdateCapacityProvider => UpdateCapacityProviderRequest, UpdateCapacityProviderResponse;
    UpdateCluster => UpdateClusterRequest, UpdateClusterResponse;
    UpdateClusterSettings => UpdateClusterSettingsRequest, UpdateClusterSettingsResponse;
    UpdateContainerAgent => UpdateContainerAgentRequest, UpdateContainerAgentResponse;
    UpdateContainerInstancesState => UpdateContainerInstancesStateRequest, UpdateContainerInstancesStateResponse;
    UpdateDaemon => UpdateDaemonRequest, UpdateDaemonResponse;
    UpdateExpressGatewayService => UpdateExpressGatewayServiceRequest, UpdateExpressGatewayServiceResponse;
    UpdateGateway => UpdateGatewayRequest, UpdateGatewayResponse;
    UpdateService => UpdateServiceRequest, UpdateServiceResponse;
    UpdateServicePrimaryTaskSet => UpdateServicePrimaryTaskSetRequest, UpdateServicePrimaryTaskSetResponse;
    UpdateTaskProtection => UpdateTaskProtectionRequest, UpdateTaskProtectionResponse;
    UpdateTaskSet => UpdateTaskSetRequest, UpdateTaskSetResponse;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_request_type() {
        assert_eq!(COVERED, Operation::ALL);
    }

    #[test]
    fn request_types_name_their_operation() {
        assert_eq!(
            <berth_types::ListClustersRequest as EcsRequest>::OPERATION.name(),
            "ListClusters"
        );
    }
}
