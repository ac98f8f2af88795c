//! Account settings: values set per IAM principal, account defaults (the
//! root principal's), and AWS's own defaults underneath both.

use berth_types::{
    DeleteAccountSettingRequest, DeleteAccountSettingResponse, EcsError,
    ListAccountSettingsRequest, ListAccountSettingsResponse, PutAccountSettingDefaultRequest,
    PutAccountSettingDefaultResponse, PutAccountSettingRequest, PutAccountSettingResponse, Setting,
    SettingName, SettingType,
};

use super::{Api, Ctx, paginate};
use crate::state::{Write, key};

/// What AWS answers for a setting nobody has set.
fn aws_default(name: SettingName) -> &'static str {
    match name {
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat => "enabled",
        SettingName::AwsvpcTrunking
        | SettingName::ContainerInsights
        | SettingName::FargateFIPSMode
        | SettingName::FargateEventWindows => "disabled",
        SettingName::TagResourceAuthorization => "on",
        SettingName::GuardDutyActivate => "off",
        SettingName::FargateTaskRetirementWaitPeriod => "7",
        SettingName::DefaultLogDriverMode => "non-blocking",
    }
}

fn allowed_values(name: SettingName) -> &'static [&'static str] {
    match name {
        // Long ARNs are mandatory since 2021 and can no longer be turned off.
        SettingName::ServiceLongArnFormat
        | SettingName::TaskLongArnFormat
        | SettingName::ContainerInstanceLongArnFormat => &["enabled"],
        SettingName::ContainerInsights => &["enabled", "disabled", "enhanced"],
        SettingName::TagResourceAuthorization | SettingName::GuardDutyActivate => &["on", "off"],
        SettingName::FargateTaskRetirementWaitPeriod => &["0", "7", "14"],
        SettingName::DefaultLogDriverMode => &["blocking", "non-blocking"],
        SettingName::AwsvpcTrunking
        | SettingName::FargateFIPSMode
        | SettingName::FargateEventWindows => &["enabled", "disabled"],
    }
}

fn check_value(name: SettingName, value: &str) -> Result<(), EcsError> {
    let allowed = allowed_values(name);
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(EcsError::invalid_parameter(format!(
            "Invalid value '{value}' for account setting {name}. Valid values: {}.",
            allowed.join(", ")
        )))
    }
}

fn principal_or_caller(ctx: &Ctx, principal: Option<&str>) -> Result<String, EcsError> {
    let Some(p) = principal.filter(|p| !p.is_empty()) else {
        return Ok(ctx.principal());
    };
    let valid = p.starts_with(&format!("arn:{}:iam::", ctx.scope.partition()))
        && (p.ends_with(":root") || p.contains(":user/") || p.contains(":role/"));
    if valid {
        Ok(p.to_owned())
    } else {
        Err(EcsError::invalid_parameter(format!(
            "principalArn must be the ARN of an IAM user, role or the root user: {p}"
        )))
    }
}

fn setting_key(ctx: &Ctx, principal: &str, name: SettingName) -> String {
    key::<Setting>(
        &ctx.scope,
        &format!("{}/{name}", principal.replace('/', "%2F")),
    )
}

fn stored(api: &Api, ctx: &Ctx, principal: &str, name: SettingName) -> Option<Setting> {
    api.cache
        .get::<Setting>(&setting_key(ctx, principal, name))
        .map(|v| v.value)
}

/// The principal's value, else the account default, else AWS's.
fn effective(api: &Api, ctx: &Ctx, principal: &str, name: SettingName) -> Setting {
    stored(api, ctx, principal, name)
        .or_else(|| stored(api, ctx, &ctx.principal(), name))
        .unwrap_or_else(|| Setting {
            name: Some(name),
            value: Some(aws_default(name).to_owned()),
            principal_arn: Some(principal.to_owned()),
            r#type: Some(SettingType::AwsManaged),
        })
}

async fn write(
    api: &Api,
    ctx: &Ctx,
    principal: String,
    name: SettingName,
    value: String,
) -> Result<Setting, EcsError> {
    check_value(name, &value)?;
    let setting = Setting {
        name: Some(name),
        value: Some(value),
        principal_arn: Some(principal.clone()),
        r#type: Some(SettingType::User),
    };
    api.writer
        .update::<Setting, Setting>(&setting_key(ctx, &principal, name), |_| {
            Ok((Some(Write::Put(setting.clone())), setting.clone()))
        })
        .await
}

pub async fn put(
    api: &Api,
    ctx: &Ctx,
    req: PutAccountSettingRequest,
) -> Result<PutAccountSettingResponse, EcsError> {
    let principal = principal_or_caller(ctx, req.principal_arn.as_deref())?;
    let setting = write(api, ctx, principal, req.name, req.value).await?;
    Ok(PutAccountSettingResponse {
        setting: Some(setting),
    })
}

pub async fn put_default(
    api: &Api,
    ctx: &Ctx,
    req: PutAccountSettingDefaultRequest,
) -> Result<PutAccountSettingDefaultResponse, EcsError> {
    let setting = write(api, ctx, ctx.principal(), req.name, req.value).await?;
    Ok(PutAccountSettingDefaultResponse {
        setting: Some(setting),
    })
}

pub async fn delete(
    api: &Api,
    ctx: &Ctx,
    req: DeleteAccountSettingRequest,
) -> Result<DeleteAccountSettingResponse, EcsError> {
    let principal = principal_or_caller(ctx, req.principal_arn.as_deref())?;
    let name = req.name;
    let deleted = api
        .writer
        .update::<Setting, Setting>(
            &setting_key(ctx, &principal, name),
            |current| match current {
                Some(setting) => Ok((Some(Write::Delete), setting)),
                None => Err(EcsError::invalid_parameter(format!(
                    "The account setting {name} is not set for principal {principal}."
                ))),
            },
        )
        .await?;
    Ok(DeleteAccountSettingResponse {
        setting: Some(deleted),
    })
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListAccountSettingsRequest,
) -> Result<ListAccountSettingsResponse, EcsError> {
    let principal = principal_or_caller(ctx, req.principal_arn.as_deref())?;
    let names: Vec<SettingName> = match req.name {
        Some(n) => vec![n],
        None => SettingName::ALL.to_vec(),
    };
    let settings = names.into_iter().filter_map(|name| {
        if req.effective_settings.unwrap_or(false) {
            Some(effective(api, ctx, &principal, name))
        } else {
            stored(api, ctx, &principal, name)
        }
    });
    let items = settings
        .filter(|s| {
            req.value
                .as_ref()
                .is_none_or(|v| s.value.as_ref() == Some(v))
        })
        .map(|s| {
            (
                s.name
                    .map(SettingName::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                s,
            )
        })
        .collect();
    let (settings, next_token) =
        paginate(items, req.max_results, req.next_token.as_deref(), 10, 10)?;
    Ok(ListAccountSettingsResponse {
        settings: Some(settings),
        next_token,
    })
}
