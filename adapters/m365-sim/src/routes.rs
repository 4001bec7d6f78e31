//! Every Graph v1.0 route the simulator serves, as (method, path template). Dispatch goes
//! through this table only, so the table *is* the served surface; a test checks it against
//! the route list of Microsoft's own SDK.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ListUsers,
    UsersDelta,
    GetUser,
    PatchUser,
    DeleteUser,
    GetManager,
    MemberOf {
        cast: bool,
        transitive: bool,
    },
    RevokeSessions,
    AssignLicense,
    LicenseDetails,
    SubscribedSkus,
    Organization,
    GetGroup,
    GroupMembers,
    /// Users in the group, directly or through the groups in it.
    TransitiveMembers,
    AddMember,
    RemoveMember,
    RemoveMemberWithoutRef,
    GroupOwners,
    AddOwner,
    RemoveOwner,
    OwnedGroups,
    RoleDefinitions,
    RoleAssignments,
    DeleteRoleAssignment,
    RoleEligibilities,
    RoleEligibilityRequest,
    AuthMethods,
    AuthMethod,
    PasswordMethods,
    PasswordMethod,
    DeleteAuthMethod(&'static str),
    ResetPasswordMethod,
    RegisteredDevices,
    OwnedDevices,
    GetDevice,
    PatchDevice,
    UserManagedDevices,
    GetManagedDevice,
    Wipe,
    Retire,
    GetMailboxSettings,
    PatchMailboxSettings,
    MessageRules,
    DeleteMessageRule,
    CalendarView,
    CancelEvent,
    CalendarPermissions,
    DeleteCalendarPermission,
    GetDrive,
    DriveRoot,
    Invite,
    /// A Teams channel's folder in its team's document library.
    ChannelFilesFolder,
    /// A file's bytes, addressed by its parent folder and name (created or replaced).
    UploadContent,
    DeletedUsers,
    GetDeletedItem,
    PurgeDeletedItem,
    RestoreDeletedItem,
}

pub struct Route {
    pub method: &'static str,
    pub template: &'static str,
    pub op: Op,
}

const fn r(method: &'static str, template: &'static str, op: Op) -> Route {
    Route { method, template, op }
}

/// Routes the real service answers that Microsoft's SDK does not list, each with its source.
pub const OUTSIDE_SDK: &[(&str, &str, &str)] = &[
    ("POST", "/$batch", "JSON batching is an endpoint, not an SDK request builder (learn.microsoft.com/graph/json-batching)"),
    ("DELETE", "/groups/{id}/members/{id}", "without /$ref this deletes the user itself when the app holds User.ReadWrite.All (group-delete-members doc)"),
    (
        "PUT",
        "/drives/{id}/items/{id}:/{id}:/content",
        "path-based addressing, which the SDKs build with a raw URL (driveitem-put-content doc: upload a new file)",
    ),
];

pub static ROUTES: &[Route] = &[
    r("GET", "/users", Op::ListUsers),
    r("GET", "/users/delta()", Op::UsersDelta),
    r("GET", "/users/{id}", Op::GetUser),
    r("PATCH", "/users/{id}", Op::PatchUser),
    r("DELETE", "/users/{id}", Op::DeleteUser),
    r("GET", "/users/{id}/manager", Op::GetManager),
    r("GET", "/users/{id}/memberOf", Op::MemberOf { cast: false, transitive: false }),
    r("GET", "/users/{id}/memberOf/microsoft.graph.group", Op::MemberOf { cast: true, transitive: false }),
    r("GET", "/users/{id}/transitiveMemberOf", Op::MemberOf { cast: false, transitive: true }),
    r("GET", "/users/{id}/transitiveMemberOf/microsoft.graph.group", Op::MemberOf { cast: true, transitive: true }),
    r("POST", "/users/{id}/revokeSignInSessions", Op::RevokeSessions),
    r("POST", "/users/{id}/assignLicense", Op::AssignLicense),
    r("GET", "/users/{id}/licenseDetails", Op::LicenseDetails),
    r("GET", "/subscribedSkus", Op::SubscribedSkus),
    r("GET", "/organization", Op::Organization),
    r("GET", "/groups/{id}", Op::GetGroup),
    r("GET", "/groups/{id}/members", Op::GroupMembers),
    r("GET", "/groups/{id}/transitiveMembers/microsoft.graph.user", Op::TransitiveMembers),
    r("POST", "/groups/{id}/members/$ref", Op::AddMember),
    r("DELETE", "/groups/{id}/members/{id}/$ref", Op::RemoveMember),
    r("DELETE", "/groups/{id}/members/{id}", Op::RemoveMemberWithoutRef),
    r("GET", "/groups/{id}/owners", Op::GroupOwners),
    r("POST", "/groups/{id}/owners/$ref", Op::AddOwner),
    r("DELETE", "/groups/{id}/owners/{id}/$ref", Op::RemoveOwner),
    r("GET", "/users/{id}/ownedObjects/microsoft.graph.group", Op::OwnedGroups),
    r("GET", "/roleManagement/directory/roleDefinitions", Op::RoleDefinitions),
    r("GET", "/roleManagement/directory/roleAssignments", Op::RoleAssignments),
    r("DELETE", "/roleManagement/directory/roleAssignments/{id}", Op::DeleteRoleAssignment),
    r("GET", "/roleManagement/directory/roleEligibilitySchedules", Op::RoleEligibilities),
    r("POST", "/roleManagement/directory/roleEligibilityScheduleRequests", Op::RoleEligibilityRequest),
    r("GET", "/users/{id}/authentication/methods", Op::AuthMethods),
    r("GET", "/users/{id}/authentication/methods/{id}", Op::AuthMethod),
    r("POST", "/users/{id}/authentication/methods/{id}/resetPassword", Op::ResetPasswordMethod),
    r("GET", "/users/{id}/authentication/passwordMethods", Op::PasswordMethods),
    r("GET", "/users/{id}/authentication/passwordMethods/{id}", Op::PasswordMethod),
    r("DELETE", "/users/{id}/authentication/phoneMethods/{id}", Op::DeleteAuthMethod("phoneMethods")),
    r("DELETE", "/users/{id}/authentication/emailMethods/{id}", Op::DeleteAuthMethod("emailMethods")),
    r("DELETE", "/users/{id}/authentication/microsoftAuthenticatorMethods/{id}", Op::DeleteAuthMethod("microsoftAuthenticatorMethods")),
    r("DELETE", "/users/{id}/authentication/fido2Methods/{id}", Op::DeleteAuthMethod("fido2Methods")),
    r("DELETE", "/users/{id}/authentication/softwareOathMethods/{id}", Op::DeleteAuthMethod("softwareOathMethods")),
    r("DELETE", "/users/{id}/authentication/windowsHelloForBusinessMethods/{id}", Op::DeleteAuthMethod("windowsHelloForBusinessMethods")),
    r("DELETE", "/users/{id}/authentication/temporaryAccessPassMethods/{id}", Op::DeleteAuthMethod("temporaryAccessPassMethods")),
    r("DELETE", "/users/{id}/authentication/platformCredentialMethods/{id}", Op::DeleteAuthMethod("platformCredentialMethods")),
    r("DELETE", "/users/{id}/authentication/externalAuthenticationMethods/{id}", Op::DeleteAuthMethod("externalAuthenticationMethods")),
    r("GET", "/users/{id}/registeredDevices", Op::RegisteredDevices),
    r("GET", "/users/{id}/ownedDevices", Op::OwnedDevices),
    r("GET", "/devices/{id}", Op::GetDevice),
    r("PATCH", "/devices/{id}", Op::PatchDevice),
    r("GET", "/users/{id}/managedDevices", Op::UserManagedDevices),
    r("GET", "/deviceManagement/managedDevices/{id}", Op::GetManagedDevice),
    r("POST", "/deviceManagement/managedDevices/{id}/wipe", Op::Wipe),
    r("POST", "/deviceManagement/managedDevices/{id}/retire", Op::Retire),
    r("GET", "/users/{id}/mailboxSettings", Op::GetMailboxSettings),
    r("PATCH", "/users/{id}/mailboxSettings", Op::PatchMailboxSettings),
    r("GET", "/users/{id}/mailFolders/{id}/messageRules", Op::MessageRules),
    r("DELETE", "/users/{id}/mailFolders/{id}/messageRules/{id}", Op::DeleteMessageRule),
    r("GET", "/users/{id}/calendarView", Op::CalendarView),
    r("POST", "/users/{id}/events/{id}/cancel", Op::CancelEvent),
    r("GET", "/users/{id}/calendar/calendarPermissions", Op::CalendarPermissions),
    r("DELETE", "/users/{id}/calendar/calendarPermissions/{id}", Op::DeleteCalendarPermission),
    r("GET", "/users/{id}/drive", Op::GetDrive),
    r("GET", "/drives/{id}/root", Op::DriveRoot),
    r("POST", "/drives/{id}/items/{id}/invite", Op::Invite),
    r("GET", "/teams/{id}/channels/{id}/filesFolder", Op::ChannelFilesFolder),
    r("PUT", "/drives/{id}/items/{id}:/{id}:/content", Op::UploadContent),
    r("GET", "/directory/deletedItems/microsoft.graph.user", Op::DeletedUsers),
    r("GET", "/directory/deletedItems/{id}", Op::GetDeletedItem),
    r("DELETE", "/directory/deletedItems/{id}", Op::PurgeDeletedItem),
    r("POST", "/directory/deletedItems/{id}/restore", Op::RestoreDeletedItem),
];

pub enum Match {
    Found(Op, Vec<String>),
    /// The path exists with other methods.
    MethodNotAllowed,
    NoSegment(String),
}

fn literal_eq(template: &str, wire: &str) -> bool {
    template.trim_end_matches("()").eq_ignore_ascii_case(wire.trim_end_matches("()"))
}

/// Matches a path (after `/v1.0`, without query) to a route. Literal segments win over
/// `{id}`, so `/users/delta` is the delta function and not a user called "delta"; `{id}:`
/// is a path-addressed segment (`items/{parent}:/{name}:/content`). Each segment is
/// percent-decoded first, as Graph does: a guest's `#EXT#` arrives as `%23EXT%23`.
pub fn find(method: &str, path: &str) -> Match {
    let decoded: Vec<String> =
        path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let mut best: Option<(usize, &Route, Vec<String>)> = None;
    let mut path_exists = false;
    for route in ROUTES {
        let t: Vec<&str> = route.template.trim_matches('/').split('/').collect();
        if t.len() != segs.len() {
            continue;
        }
        let mut ids = Vec::new();
        let mut literals = 0;
        let ok = t.iter().zip(&segs).all(|(t, s)| {
            if *t == "{id}" {
                ids.push(s.to_string());
                true
            } else if *t == "{id}:" && s.len() > 1 && s.ends_with(':') {
                ids.push(s.trim_end_matches(':').to_string());
                true
            } else if literal_eq(t, s) {
                literals += 1;
                true
            } else {
                false
            }
        });
        if !ok {
            continue;
        }
        path_exists = true;
        if !route.method.eq_ignore_ascii_case(method) {
            continue;
        }
        if best.as_ref().is_none_or(|(l, ..)| literals > *l) {
            best = Some((literals, route, ids));
        }
    }
    match best {
        Some((_, route, ids)) => Match::Found(route.op, ids),
        None if path_exists => Match::MethodNotAllowed,
        None => Match::NoSegment(segs.last().copied().unwrap_or("").to_string()),
    }
}
