//! A team's document library as Teams channels use it: each channel's folder
//! (`filesFolder`) and files uploaded into it by path.

use super::*;

const FOLDER_DEFAULT: &[&str] = &["id", "name", "webUrl", "folder", "parentReference", "createdDateTime", "lastModifiedDateTime"];
/// What SharePoint refuses in a file name.
const BAD_NAME: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

pub(super) fn files_folder(t: &Tenant, ctx: &Ctx, ids: &[String], q: &Query) -> Reply {
    let Some(g) = t.groups.get(&ids[0]) else { return Reply::error(404, "NotFound", format!("No team found with Group Id {}", ids[0])) };
    let Some(site) = &g.site else { return Reply::error(404, "NotFound", format!("No team found with Group Id {}", ids[0])) };
    let Some(c) = site.channels.iter().find(|c| c.channel == ids[1]) else {
        return Reply::error(404, "NotFound", format!("Channel {} was not found in team {}", ids[1], ids[0]));
    };
    let full = json!({
        "id": c.folder_id, "name": c.name, "webUrl": c.web_url(&site.web_url),
        "createdDateTime": ctx.stamp(), "lastModifiedDateTime": ctx.stamp(),
        "folder": { "childCount": c.files.len() },
        "parentReference": { "driveId": site.drive_id, "driveType": "documentLibrary" },
    });
    match project(&full, q.get("$select"), FOLDER_DEFAULT, "microsoft.graph.driveItem") {
        Ok(v) => Reply::ok(v),
        Err(e) => e,
    }
}

/// `PUT /drives/{drive}/items/{parent}:/{name}:/content`: creates the file (201) or
/// replaces its content (200), as Graph's default conflict behaviour does.
pub(super) fn upload(t: &mut Tenant, ledger: &mut Ledger, ctx: &Ctx, ids: &[String], content: &Content) -> Reply {
    let tid = t.id.clone();
    let (drive, parent, name) = (&ids[0], &ids[1], ids[2].trim());
    if name.is_empty() || name.contains(BAD_NAME) {
        return Reply::error(400, "invalidRequest", "The provided name contains invalid characters.");
    }
    let Some(site) = t.groups.values_mut().filter_map(|g| g.site.as_mut()).find(|s| &s.drive_id == drive) else {
        return Reply::error(404, "itemNotFound", "The resource could not be found.");
    };
    let (drive_id, library) = (site.drive_id.clone(), site.web_url.clone());
    let Some(folder) = site.folder_mut(parent) else { return Reply::error(404, "itemNotFound", "The resource could not be found.") };
    let created = !folder.files.contains_key(name);
    let id = format!("01{}", &guid(&format!("{drive_id}/{parent}/{name}")).replace('-', "")[..24].to_ascii_uppercase());
    folder.files.insert(name.to_string(), StoredFile { id: id.clone(), bytes: content.bytes.to_vec(), content_type: content.content_type.to_string() });
    let web_url = format!("{}/{}", folder.web_url(&library), name.replace(' ', "%20"));
    ledger.record(ctx.now, &tid, "drive.file_uploaded", &id, json!({ "name": name, "folder": folder.name, "size": content.bytes.len() }));
    let item = json!({
        "id": id, "name": name, "webUrl": web_url, "size": content.bytes.len(),
        "createdDateTime": ctx.stamp(), "lastModifiedDateTime": ctx.stamp(),
        "file": { "mimeType": content.content_type },
        "parentReference": { "driveId": drive_id, "driveType": "documentLibrary", "id": folder.folder_id },
    });
    Reply::status(if created { 201 } else { 200 }, item)
}
