//! Volume rules: task-level `volumes` names, and the container references
//! to them (`mountPoints`) and to each other (`volumesFrom`).

use std::collections::HashSet;

use berth_types::EcsError;

use super::{Ctx, container_name, declared_volumes, valid_name};

pub(crate) fn check(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    let mut names = HashSet::new();
    for volume in declared_volumes(ctx.req) {
        let name = volume.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(EcsError::client("volume.name should not be null or empty."));
        }
        if !valid_name(name) {
            return Err(EcsError::client("volume.name contains invalid characters."));
        }
        if !names.insert(name) {
            return Err(EcsError::client(format!(
                "Invalid setting for volume '{name}'. Volume names must be unique within a task definition."
            )));
        }
    }
    for c in ctx.containers {
        let name = container_name(c);
        for mount in c.mount_points.as_deref().unwrap_or_default() {
            // ECS renders a missing sourceVolume as 'null'.
            let source = mount.source_volume.as_deref();
            if !source.is_some_and(|s| names.contains(s)) {
                return Err(EcsError::client(format!(
                    "Unknown volume '{}'.",
                    source.unwrap_or("null")
                )));
            }
        }
        for from in c.volumes_from.as_deref().unwrap_or_default() {
            let source = from.source_container.as_deref().unwrap_or("");
            if source == name {
                return Err(EcsError::client(format!(
                    "Invalid 'volumesFrom' setting for container '{name}'. A container cannot mount volumes from itself."
                )));
            }
            if !ctx.has_container(source) {
                return Err(EcsError::client(format!(
                    "Invalid 'volumesFrom' setting for container '{name}'. Container '{source}' does not exist."
                )));
            }
        }
    }
    Ok(())
}
