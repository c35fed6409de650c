// Package crmbench holds the benchmarks of the CRM connectors: contacts
// per second through each connector against its fake server, with the
// no-op connector as the baseline in the same run:
//
//	go test ./plugins/crm/crmbench -run '^$' -bench .
package crmbench
