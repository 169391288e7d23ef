//! `mgmt status`: the hosts of a cluster.

use anyhow::{Result, bail};

use super::StatusArgs;

pub async fn run(_args: StatusArgs) -> Result<u8> {
    bail!("not implemented yet")
}
