//! What a Graph call needs before its handler runs: the permissions each operation
//! requires of the token, and what it costs against the throttling budgets.

use super::*;

pub(super) const USER_READ: &[&str] = &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All", "User.ReadBasic.All"];
pub(super) const USER_DELETE: &[&str] = &["User.DeleteRestore.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const MEMBER_READ: &[&str] =
    &["GroupMember.Read.All", "Group.Read.All", "GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
pub(super) const MEMBER_WRITE: &[&str] = &["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"];
/// group-post-owners and group-delete-owners: GroupMember.* does not cover owners.
pub(super) const OWNER_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const ROLE_READ: &[&str] =
    &["RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", "Directory.Read.All", "Directory.ReadWrite.All"];
pub(super) const ROLE_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
pub(super) const ELIGIBILITY_READ: &[&str] = &[
    "RoleEligibilitySchedule.Read.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
];
pub(super) const ELIGIBILITY_WRITE: &[&str] = &["RoleEligibilitySchedule.ReadWrite.Directory", "RoleManagement.ReadWrite.Directory"];
pub(super) const AUTH_READ: &[&str] = &["UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"];
pub(super) const DEVICE_READ: &[&str] = &["Device.Read.All", "Device.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
pub(super) const DEVICE_WRITE: &[&str] = &["Device.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const INTUNE_READ: &[&str] = &["DeviceManagementManagedDevices.Read.All", "DeviceManagementManagedDevices.ReadWrite.All"];
pub(super) const INTUNE_PRIVILEGED: &[&str] = &["DeviceManagementManagedDevices.PrivilegedOperations.All", "DeviceManagementManagedDevices.ReadWrite.All"];
pub(super) const MAILBOX_SETTINGS_READ: &[&str] = &["MailboxSettings.Read", "MailboxSettings.ReadWrite"];
pub(super) const MAILBOX_SETTINGS_WRITE: &[&str] = &["MailboxSettings.ReadWrite"];
pub(super) const CALENDAR_READ: &[&str] = &["Calendars.ReadBasic", "Calendars.Read", "Calendars.ReadWrite"];
pub(super) const CALENDAR_WRITE: &[&str] = &["Calendars.ReadWrite"];
pub(super) const FILES_READ: &[&str] = &["Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All"];
pub(super) const FILES_WRITE: &[&str] = &["Files.ReadWrite.All", "Sites.ReadWrite.All"];
/// channel-get-filesfolder, application permissions.
pub(super) const CHANNEL_FOLDER_READ: &[&str] =
    &["Files.Read.All", "File.Read.Group", "Files.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All"];
pub(super) const ORG_READ: &[&str] = &[
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "LicenseAssignment.Read.All",
    "LicenseAssignment.ReadWrite.All",
];
pub(super) const LICENCE_WRITE: &[&str] = &["LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const REVOKE: &[&str] = &["User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const ENABLE_DISABLE: &[&str] = &["User.EnableDisableAccount.All", "User.ReadUpdate.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const PASSWORD_WRITE: &[&str] = &["User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const USER_UPDATE: &[&str] = &["User.ReadUpdate.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(super) const IMMUTABLE_WRITE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
/// The permission a route needs: any one of these, from the token's `roles` (app) or `scp`.
/// `None` when the rule depends on the body (PATCH user) and is checked in the handler.
pub fn required(op: Op) -> Option<&'static [&'static str]> {
    use Op::*;
    Some(match op {
        ListUsers | UsersDelta | GetUser | GetManager | LicenseDetails | RegisteredDevices | OwnedDevices => USER_READ,
        PatchUser => return None,
        DeleteUser | PurgeDeletedItem | RestoreDeletedItem => USER_DELETE,
        DeletedUsers | GetDeletedItem => USER_READ,
        MemberOf { .. } | GetGroup | GroupMembers | TransitiveMembers | GroupOwners | OwnedGroups => MEMBER_READ,
        AddMember | RemoveMember | RemoveMemberWithoutRef => MEMBER_WRITE,
        AddOwner | RemoveOwner => OWNER_WRITE,
        RevokeSessions => REVOKE,
        AssignLicense => LICENCE_WRITE,
        SubscribedSkus | Organization => ORG_READ,
        RoleDefinitions | RoleAssignments => ROLE_READ,
        DeleteRoleAssignment => ROLE_WRITE,
        RoleEligibilities => ELIGIBILITY_READ,
        RoleEligibilityRequest => ELIGIBILITY_WRITE,
        AuthMethods | AuthMethod | PasswordMethods | PasswordMethod => AUTH_READ,
        DeleteAuthMethod(c) => match c {
            "phoneMethods" => &["UserAuthMethod-Phone.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "emailMethods" => &["UserAuthMethod-Email.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "microsoftAuthenticatorMethods" => &["UserAuthMethod-MicrosoftAuthApp.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "fido2Methods" => &["UserAuthMethod-Passkey.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "softwareOathMethods" => &["UserAuthMethod-SoftwareOATH.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "windowsHelloForBusinessMethods" => &["UserAuthMethod-WindowsHello.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            "temporaryAccessPassMethods" => &["UserAuthMethod-TAP.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All"],
            _ => &["UserAuthenticationMethod.ReadWrite.All"],
        },
        // Application permissions are not supported here: only the delegated scope works.
        ResetPasswordMethod => &["UserAuthenticationMethod.ReadWrite.All"],
        GetDevice => DEVICE_READ,
        PatchDevice => DEVICE_WRITE,
        UserManagedDevices | GetManagedDevice => INTUNE_READ,
        Wipe | Retire => INTUNE_PRIVILEGED,
        GetMailboxSettings | MessageRules => MAILBOX_SETTINGS_READ,
        PatchMailboxSettings | DeleteMessageRule => MAILBOX_SETTINGS_WRITE,
        CalendarView | CalendarPermissions => CALENDAR_READ,
        CancelEvent | DeleteCalendarPermission => CALENDAR_WRITE,
        GetDrive | DriveRoot => FILES_READ,
        Invite | UploadContent => FILES_WRITE,
        ChannelFilesFolder => CHANNEL_FOLDER_READ,
    })
}

pub fn holds(claims: &Claims, any_of: &[&str]) -> bool {
    let grants = claims.grants();
    any_of.iter().any(|p| grants.iter().any(|g| g.eq_ignore_ascii_case(p)))
}

/// What a request costs against the throttling model (graph.md §3 resource units).
pub fn cost(op: Op, ids: &[String], q: &Query, t: &Tenant) -> Cost {
    use Op::*;
    let adjust = |base: u32| -> u32 {
        let mut ru = base as i64;
        if q.get("$select").is_some() {
            ru -= 1;
        }
        if q.get("$expand").is_some() {
            ru += 1;
        }
        if q.get("$top").and_then(|t| t.parse::<u32>().ok()).is_some_and(|t| t < 20) {
            ru -= 1;
        }
        ru.max(1) as u32
    };
    let mailbox = || Cost::Outlook { mailbox: ids.first().and_then(|k| t.user_id(k)).unwrap_or_else(|| ids.first().cloned().unwrap_or_default()) };
    match op {
        ListUsers => Cost::Identity { ru: adjust(2), write: false },
        MemberOf { transitive, .. } => Cost::Identity { ru: adjust(if transitive { 5 } else { 2 }), write: false },
        GroupMembers | OwnedGroups => Cost::Identity { ru: adjust(3), write: false },
        TransitiveMembers => Cost::Identity { ru: adjust(5), write: false },
        LicenseDetails => Cost::Identity { ru: adjust(2), write: false },
        SubscribedSkus => Cost::Identity { ru: adjust(3), write: false },
        PatchUser
        | DeleteUser
        | RevokeSessions
        | AssignLicense
        | AddMember
        | RemoveMember
        | RemoveMemberWithoutRef
        | AddOwner
        | RemoveOwner
        | DeleteRoleAssignment
        | RoleEligibilityRequest
        | DeleteAuthMethod(_)
        | ResetPasswordMethod
        | PurgeDeletedItem
        | RestoreDeletedItem => Cost::Identity { ru: 1, write: true },
        PatchDevice => Cost::Device { device: ids.first().cloned().unwrap_or_default() },
        UserManagedDevices | GetManagedDevice => Cost::Intune { write: false },
        Wipe | Retire => Cost::Intune { write: true },
        GetMailboxSettings
        | PatchMailboxSettings
        | MessageRules
        | DeleteMessageRule
        | CalendarView
        | CancelEvent
        | CalendarPermissions
        | DeleteCalendarPermission => mailbox(),
        GetDrive | DriveRoot | Invite | ChannelFilesFolder | UploadContent => Cost::None,
        _ => Cost::Identity { ru: adjust(1), write: false },
    }
}
