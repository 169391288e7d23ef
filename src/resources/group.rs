//! `group`: a local group (`/etc/group`), present with its gid or absent. Checked by reading
//! `/etc/group` directly, changed with `groupadd`, `groupmod` and `groupdel`, watched with
//! inotify on `/etc/group`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::user::{AccountState, Plan, accounts, bad_account_name, carry_out, watch_files};
use super::{ApplyCtx, Changes, NamedEdges, ResResult, Resource, ResourceError, ValidationError, WatchCtx};
use crate::contract::Meta;
use crate::os::passwd::{self, Accounts};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The group's name.
    pub name: String,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub state: AccountState,
    /// Unset: any (a new group gets the next free one).
    #[serde(default)]
    pub gid: Option<u32>,
}

impl Group {
    /// Refuse a gid another group has (the shadow tools would, less clearly).
    fn check_gid_free(&self, acc: &Accounts) -> Result<(), String> {
        match self.gid.and_then(|gid| acc.groups.iter().find(|g| g.gid == gid && g.name != self.name)) {
            Some(other) => Err(format!("gid {} belongs to group {}", other.gid, other.name)),
            None => Ok(()),
        }
    }

    /// What makes `/etc/group` match this resource. Pure.
    pub fn plan(&self, acc: &Accounts) -> Result<Plan, String> {
        let name = self.name.clone();
        match (self.state, acc.group(&self.name)) {
            (AccountState::Absent, None) => Ok(Plan::default()),
            (AccountState::Absent, Some(have)) => Ok(Plan {
                tool: Some("groupdel"),
                args: vec![name.clone()],
                changes: vec![format!("remove group {name} (gid {})", have.gid)],
            }),
            (AccountState::Exists, None) => {
                self.check_gid_free(acc)?;
                let (args, change) = match self.gid {
                    Some(gid) => (vec!["--gid".into(), gid.to_string(), name.clone()], format!("add group {name} (gid {gid})")),
                    None => (vec![name.clone()], format!("add group {name}")),
                };
                Ok(Plan { tool: Some("groupadd"), args, changes: vec![change] })
            }
            (AccountState::Exists, Some(have)) => match self.gid {
                Some(gid) if gid != have.gid => {
                    self.check_gid_free(acc)?;
                    Ok(Plan {
                        tool: Some("groupmod"),
                        args: vec!["--gid".into(), gid.to_string(), name],
                        changes: vec![format!("gid {} -> {gid}", have.gid)],
                    })
                }
                _ => Ok(Plan::default()),
            },
        }
    }
}

#[async_trait]
impl Resource for Group {
    crate::resource_common!("group");

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(why) = bad_account_name(&self.name) {
            return Err(ValidationError::new("name", why));
        }
        if self.gid == Some(u32::MAX) {
            return Err(ValidationError::new("gid", "4294967295 means \"no group\" to the kernel"));
        }
        Ok(())
    }

    async fn watch(&self, ctx: WatchCtx) -> ResResult<()> {
        watch_files(&ctx, &[passwd::GROUP]).await
    }

    async fn check_apply(&self, _ctx: &ApplyCtx, apply: bool) -> ResResult<Changes> {
        let plan = self.plan(&accounts().await?).map_err(ResourceError::Msg)?;
        carry_out(plan, apply).await
    }

    fn named_edges(&self) -> NamedEdges {
        let mut provides = vec![format!("group:{}", self.name)];
        provides.extend(self.gid.map(|g| format!("gid:{g}")));
        NamedEdges { provides, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc() -> Accounts {
        Accounts::parse("", "root:x:0:\nstaff:x:50:\nusers:x:100:alice\n")
    }

    fn group(j: serde_json::Value) -> Group {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn add_modify_remove_or_nothing() {
        let p = group(serde_json::json!({"name": "ops", "gid": 1600})).plan(&acc()).unwrap();
        assert_eq!((p.tool, p.args.join(" ")), (Some("groupadd"), "--gid 1600 ops".into()));
        assert_eq!(p.changes, ["add group ops (gid 1600)"]);
        let p = group(serde_json::json!({"name": "ops"})).plan(&acc()).unwrap();
        assert_eq!((p.args, p.changes), (vec!["ops".to_string()], vec!["add group ops".to_string()]));
        let p = group(serde_json::json!({"name": "staff", "gid": 51})).plan(&acc()).unwrap();
        assert_eq!((p.tool, p.args.join(" ")), (Some("groupmod"), "--gid 51 staff".into()));
        assert_eq!(p.changes, ["gid 50 -> 51"]);
        let p = group(serde_json::json!({"name": "staff", "state": "absent"})).plan(&acc()).unwrap();
        assert_eq!((p.tool, p.changes), (Some("groupdel"), vec!["remove group staff (gid 50)".to_string()]));
        for same in [serde_json::json!({"name": "staff", "gid": 50}), serde_json::json!({"name": "staff"})] {
            assert_eq!(group(same).plan(&acc()).unwrap(), Plan::default());
        }
        assert_eq!(group(serde_json::json!({"name": "x", "state": "absent"})).plan(&acc()).unwrap(), Plan::default());
    }

    #[test]
    fn a_taken_gid_and_bad_params_are_refused() {
        let e = group(serde_json::json!({"name": "ops", "gid": 100})).plan(&acc()).unwrap_err();
        assert_eq!(e, "gid 100 belongs to group users");
        assert_eq!(group(serde_json::json!({"name": "a b"})).validate().unwrap_err().field, "name");
        assert_eq!(group(serde_json::json!({"name": "g", "gid": 4294967295u32})).validate().unwrap_err().field, "gid");
        assert!(serde_json::from_value::<Group>(serde_json::json!({"name": "g", "state": "gone"})).is_err());
    }

    #[test]
    fn a_group_provides_its_name_and_gid() {
        let g = group(serde_json::json!({"name": "ops", "gid": 7}));
        assert_eq!(g.named_edges().provides, ["group:ops", "gid:7"]);
    }
}
