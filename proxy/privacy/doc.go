// Package privacy serves the rights of the people Vigie tracks (GDPR
// Art. 15–21) through the admin API:
//
//	POST /admin/v1/privacy/requests              202 {"id": …}
//	GET  /admin/v1/privacy/requests              list, legal deadline, days left
//	GET  /admin/v1/privacy/requests/{id}         status, steps, deadline
//	GET  /admin/v1/privacy/requests/{id}/export  JSON (Art. 20), ?format=html
//
// A request names a person by one identifier (an e-mail address, a phone
// number, a user id, an anonymous id or the vigie_id cookie's value). The
// value is used once, when the request is accepted, to find the person's
// subjects (pseudonyms): the pseudonyms it has under every active
// pseudonymization key, the blind index (keyed MACs of identify e-mails,
// phones and user ids, package proxy/blind) and the subject links (a user
// id's pseudonym and the anonymous ids it was seen with). The value itself
// is never stored or logged; the request keeps the identifier's kind and
// the subjects found.
//
// Requests are jobs: stored in Badger (storage.PutPrivacyRequest), run in
// order by one runner goroutine, each step committed before the next and
// idempotent, so that an unfinished request resumes after a restart. The
// types:
//
//   - access, export: the document of everything held about the person
//     (events as stored, e-mail events, profiles and segments with their
//     history, consent now and its history with proof, vault traits
//     decrypted, what each plugin was given), built on demand; in
//     cluster mode, once the request is done, every node serves the same
//     document, assembled from the parts the members (the receiving node
//     included) shared sealed.
//   - erase: suppression entries if asked (the person's later events are
//     then dropped at the door), the erasure event
//     vigie.privacy.<site>.erase committed to the outbox, every key of the
//     subjects physically dropped (storage.EraseSubjects), each plugin's
//     acknowledgement of the event, the subjects' messages deleted from
//     every stream (SecureDeleteMsg), then a receipt without identifiers.
//   - object (to marketing, or the purposes given), restrict: flags in the
//     consent ledger applied to every later event whatever it says, the
//     profile dropped (its segment exits published), contact resolution
//     stopped, and a privacy event (object, restrict); lift: true lifts
//     them.
//   - rectify: the vaulted traits replaced, and a rectify event so that
//     syncers update.
//
// Every request is passed to an Auditor (no-op by default) with who, when,
// which fields, never the values.
package privacy
